"""Two trained GNNs as one (``recsys.training.mixture``) on Gowalla: the weight chosen on
validation, test once.

Each member is a run of ``gowalla.py --save-validated DIR``: its validated checkpoint (the
epoch validation chose, before the validation pairs joined training) and its final one. The
weight of B is chosen on validation with the validated checkpoints (the carve both trained
without, every user with validation pairs); the final mixture takes the final checkpoints with
that weight, and is scored on test once. For the record (labelled, never a choice) the test
figures of every candidate weight are printed too.

    python benchmarks/gowalla.py --threads 2 --config benchmarks/configs/gowalla-distill.toml \\
        --set item_item_keep=0 --save-validated /tmp/a
    python benchmarks/gowalla.py --threads 2 --config benchmarks/configs/gowalla.toml \\
        --set item_item_keep=0 --save-validated /tmp/b
    python benchmarks/gowalla_mixture.py --threads 2 \\
        --a /tmp/a/epoch-6.pt,/tmp/a/epoch-8.pt --b /tmp/b/epoch-6.pt,/tmp/b/epoch-8.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from gowalla import DEFAULT_DIR, load_gowalla, test_evaluator
from gowalla_item_norm import model_of, positive, read_state

from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import split_validation
from recsys.training.evaluator import RankingEvaluator
from recsys.training.mixture import choose_mixture, spread_ratio
from recsys.training.training_graph import adjacency_for

WEIGHTS = "0.125,0.25,0.5,1"


def member(text: str) -> tuple[Path, Path]:
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected VALIDATED,FINAL (two paths), got {text!r}")
    return Path(parts[0]), Path(parts[1])


def weights_of(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    if any(w <= 0 for w in out):
        raise argparse.ArgumentTypeError(f"{text!r}: weights must be > 0 (0 is always tried)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--a", type=member, required=True, metavar="VALIDATED,FINAL")
    ap.add_argument("--b", type=member, required=True, metavar="VALIDATED,FINAL")
    ap.add_argument("--weights", type=weights_of, default=weights_of(WEIGHTS))
    ap.add_argument("--layers", type=positive, default=3)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--threads", type=positive, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    # every file read before the data: a wrong path is one line, at once
    states = [
        (f"{flag} {path}", read_state(path, flag))
        for flag, paths in (("--a", args.a), ("--b", args.b))
        for path in paths
    ]
    split, data = load_gowalla(args.data)
    carve = split_validation(data, args.val_fraction, args.seed)
    a_val, a_final, b_val, b_final = (
        model_of(state, dim, data, args.layers, name) for name, (state, dim) in states
    )
    cfg = TrainConfig(num_layers=args.layers)
    validation = RankingEvaluator.of_validation(carve)
    carve_adj = adjacency_for(carve.train, cfg)
    choice = choose_mixture(
        a_val, b_val, carve_adj, validation, args.weights, "recall@20", args.seed
    )
    print(
        json.dumps(
            {
                "event": "validation",
                "users": int(validation.users.size),
                "recall@20": {f"{w:g}": round(v, 5) for w, v in choice.scores.items()},
                "chosen": choice.weight,
            }
        ),
        flush=True,
    )
    test = test_evaluator(data, split)
    full_adj = adjacency_for(data, cfg)

    def on_test(model: FeatureLightGCN) -> dict[str, float]:
        with torch.no_grad():
            ue, ie = model(full_adj)
        m = test.evaluate(ue, ie)
        return {k: round(m[k], 5) for k in ("recall@20", "ndcg@20")}

    rows = {"a": on_test(a_final), "b": on_test(b_final)}
    ratio = spread_ratio(a_final, b_final, full_adj, args.seed)  # once for every weight
    for w in args.weights:
        rows[f"{w:g}"] = on_test(a_final.beside(b_final, w * ratio))
    chosen = rows["a"] if choice.weight == 0 else rows[f"{choice.weight:g}"]
    print(json.dumps({"event": "test_every_weight", "labelled": "not a choice", **rows}))
    print(
        json.dumps(
            {
                "event": "summary",
                "benchmark": "gowalla_mixture",
                "weight_chosen_on_validation": choice.weight,
                "test_at_chosen": chosen,
                "test_a_alone": rows["a"],
                "test_b_alone": rows["b"],
                "embedding_dim": a_final.embedding_dim
                + (b_final.embedding_dim if choice.weight else 0),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
