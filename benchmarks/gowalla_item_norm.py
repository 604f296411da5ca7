"""Probe: the final item table rescaled by its norm, ``e_i ||e_i||^-g``, on validation and test.

A BPR item embedding's norm tracks the item's popularity, so ``g`` trades popularity against
taste without retraining (``g < 0``: more popular items; ``g = 1``: cosine). This scores a
model saved by ``gowalla.py --save-model`` for each ``g``: validation on the carve training
makes (``--val-fraction``, ``--seed``: the config's; the model propagating over the carved
graph, every user with validation pairs) and the published test (the full train graph). Which
``g`` validation would choose, and what test says of it, is the question; the product does not
carry the lever (benchmarks/RESULTS.md: validation picks it by noise).

    python benchmarks/gowalla.py --threads 2 --config benchmarks/configs/gowalla.toml \\
        --set fold_validation_epochs=0 --set item_item_keep=0 --save-model /tmp/m.pt
    python benchmarks/gowalla_item_norm.py --model /tmp/m.pt --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from gowalla import DEFAULT_DIR, load_gowalla, test_evaluator
from torch import Tensor

from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.evaluator import RankingEvaluator
from recsys.training.training_graph import adjacency_for


def rescaled(items: Tensor, g: float) -> Tensor:
    """``items[i] * ||items[i]||^-g``; a zero row stays zero."""
    norm = torch.linalg.vector_norm(items, dim=1, keepdim=True).clamp_min(1e-12)
    out: Tensor = items * norm.pow(-g)
    return out


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_state(path: Path, flag: str = "--model") -> tuple[dict[str, Tensor], int]:
    """The saved state_dict and its embedding size; a file that is not one exits with a line
    naming ``flag`` (the option that gave it) and the path."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise SystemExit(f"{flag} {path}: {exc}") from None
    except Exception as exc:  # torch.load's refusals come as several types
        raise SystemExit(f"{flag} {path}: not a torch state_dict ({type(exc).__name__})") from None
    weight = state.get("user_embedding.weight") if isinstance(state, dict) else None
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise SystemExit(
            f"{flag} {path}: not a FeatureLightGCN state_dict (gowalla.py --save-model)"
        )
    return state, int(weight.shape[1])


def model_of(
    state: dict[str, Tensor], dim: int, data: InteractionData, layers: int, name: str
) -> FeatureLightGCN:
    """The saved ``state`` as a model of this split, in eval mode; another dataset's model
    exits with a line naming it (``name``) and the sizes that differ."""
    model = FeatureLightGCN(data.n_users, data.n_items, dim, layers)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise SystemExit(f"{name}: not a model of this split ({detail})") from None
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="a state_dict from gowalla.py")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--powers", default="-0.5,-0.3,-0.2,-0.1,0,0.1,0.2,0.3,0.5")
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--threads", type=positive, default=None)
    args = ap.parse_args(argv)
    try:
        powers = [float(x) for x in args.powers.split(",")]
    except ValueError as exc:
        raise SystemExit(f"--powers {args.powers!r}: {exc}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    state, dim = read_state(args.model)
    split, data = load_gowalla(args.data)
    carve = split_validation(data, args.val_fraction, args.seed)
    model = model_of(state, dim, data, args.layers, f"--model {args.model}")
    cfg = TrainConfig(embedding_dim=dim, num_layers=args.layers)
    validation = RankingEvaluator.of_validation(carve)
    test = test_evaluator(data, split)
    with torch.no_grad():
        vu, vi = model(adjacency_for(carve.train, cfg))
        tu, ti = model(adjacency_for(data, cfg))
    # how far the test pairs lean to the head, next to the train pairs the carve draws from
    pop = np.bincount(data.train_item, minlength=data.n_items)
    head = np.argsort(-pop, kind="stable")[: max(1, data.n_items // 100)]
    share = {
        f"{name}_pairs_on_top_1pct_items": round(float(np.isin(items, head).mean()), 4)
        for name, items in (("train", data.train_item), ("test", split.test_item))
    }
    print(json.dumps({"event": "head", **share}), flush=True)
    for g in powers:
        v = validation.evaluate(vu, rescaled(vi, g))
        t = test.evaluate(tu, rescaled(ti, g))
        row = {"event": "power", "g": g}
        row |= {f"val_{k}": round(v[k], 5) for k in ("recall@20", "ndcg@20")}
        row |= {f"test_{k}": round(t[k], 5) for k in ("recall@20", "ndcg@20")}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
