"""Time-matched loss ablation on Gowalla: each variant trains for the same wall-clock budget.

Every variant is the recipe of record (``--config``) with a few fields changed,
trained in this one process one after the other for ``--budget`` seconds of
training (validation included; the cosine learning-rate schedule runs over the
budget, ``TrainConfig.max_train_seconds``), the checkpoint chosen on validation,
then evaluated once on test (full ranking, train items masked). Prints one JSON
line per variant with the load average before and after, so that a comparison
made on a shared machine says how shared it was.

    python benchmarks/gowalla_losses.py --threads 2 --budget 480 \\
        --config benchmarks/configs/gowalla.toml --variants bpr,softmax

``--variant NAME=JSON`` adds a variant of its own (TrainConfig fields over the recipe),
e.g. ``--variant 'bpr-batch64k={"batch_size": 65536, "lr": 0.02}' --variants bpr-batch64k``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from gowalla import DEFAULT_DIR, load_gowalla, overrides, test_evaluator

from recsys.config import load_config
from recsys.training.config import TrainConfig
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

SOFTMAX: dict[str, Any] = {
    "loss": "softmax",
    "init": "normal",
    "init_std": 0.01,
    "temperature": 0.11,
    "l2": 1e-5,
    "softmax_negatives": 2048,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "bpr": {},
    "softmax": SOFTMAX,
    "softmax-adaptive": {**SOFTMAX, "temperature_mode": "adaptive"},
    "softmax-logq": {**SOFTMAX, "logq_correction": True},
    "softmax-uniform": {**SOFTMAX, "softmax_sampler": "uniform"},
    "softmax-contrastive": {**SOFTMAX, "contrastive_weight": 0.1},
    "softmax-dot-uniform": {
        **SOFTMAX,
        "cosine": False,
        "temperature": 1.0,
        "l2": 1e-4,
        "softmax_sampler": "uniform",
    },
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--config", type=Path, default=None, help="the base recipe")
    ap.add_argument("--variants", default="bpr,softmax", help=f"of {', '.join(VARIANTS)}")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="define a variant: TrainConfig fields (a JSON object) over the recipe",
    )
    ap.add_argument("--budget", type=float, default=480.0, help="training seconds per variant")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a TrainConfig field for every variant",
    )
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    variants = {**VARIANTS, **overrides(args.variant, "--variant")}
    for name, fields in variants.items():
        try:
            TrainConfig.model_validate({**fields, "tracking": {"enabled": False}})
        except (TypeError, ValueError) as exc:  # not an object, or an unknown / invalid field
            ap.error(f"variant {name!r}: not TrainConfig fields ({exc})")
    unknown = [n for n in args.variants.split(",") if n not in variants]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(variants)}")
    split, data = load_gowalla(args.data)
    base = load_config(args.config, TrainConfig).model_dump()
    common: dict[str, Any] = {
        "tracking": {"enabled": False},
        "progress": False,
        "max_train_seconds": args.budget,
        "epochs": 200,
        "patience": 100,
        # a loss ablation of the GNN: no item-item term (it would cost ~8 min per variant)
        "item_item_keep": 0,
    }
    common.update(overrides(args.set))
    if args.threads is not None:
        common["threads"] = args.threads
    test_eval = test_evaluator(data, split)
    for name in args.variants.split(","):
        cfg = TrainConfig.model_validate({**base, **variants[name], **common})
        load_before = os.getloadavg()
        t = time.perf_counter()
        result = train(data, cfg)
        wall = time.perf_counter() - t
        with torch.no_grad():
            ue, ie = result.model(adjacency_for(data, cfg))
        test = test_eval.evaluate(ue, ie)
        print(
            json.dumps(
                {
                    "event": "variant",
                    "name": name,
                    "changes": variants[name],
                    "budget_s": args.budget,
                    "train_seconds": round(result.train_seconds, 1),
                    "wall_seconds": round(wall, 1),
                    "epochs_run": result.epochs_run,
                    "best_epoch_on_validation": result.best_epoch,
                    "validation_at_best": {
                        k: round(v, 5)
                        for k, v in result.best_val.items()
                        if k in ("recall@20", "ndcg@20")
                    },
                    "test_at_val_best": {
                        "recall@20": round(test["recall@20"], 5),
                        "ndcg@20": round(test["ndcg@20"], 5),
                    },
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
