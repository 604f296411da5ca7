"""The training defaults and each loss on a synthetic shop, against the baselines.

Generates a ``recsys synth`` shop (the demo's size by default: 3,000 users, 600
products, 14 days), builds its graph snapshot with the default graph config,
trains ``recsys train``'s defaults and each variant (the defaults with a few
fields changed), and scores them and the baselines (popularity, MF-BPR = the
same defaults with K = 0, EASE, GF-CF) on the snapshot's holdout: full ranking,
train items masked, the model gate's harness. One JSON line per model.

    python benchmarks/synth_losses.py --threads 2 --variants default,softmax
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from typing import Any

from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.loop import train
from recsys.training.run import baseline_metrics, holdout_evaluator, model_metrics

SOFTMAX: dict[str, Any] = {
    "loss": "softmax",
    "init": "normal",
    "init_std": 0.01,
    "temperature": 0.11,
    "l2": 1e-5,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "mf-bpr": {"num_layers": 0},
    "softmax": SOFTMAX,
    "softmax-logq": {**SOFTMAX, "logq_correction": True},
    "softmax-uniform": {**SOFTMAX, "softmax_sampler": "uniform"},
    "softmax-dot-uniform": {
        **SOFTMAX,
        "cosine": False,
        "temperature": 1.0,
        "l2": 1e-4,
        "softmax_sampler": "uniform",
    },
    "fold": {"fold_validation_epochs": 6},
    "blend": {"blend_rank": 64},
    "item-item": {"item_item_keep": 100},
    "item-item-30": {"item_item_keep": 30},
    "item-item-300": {"item_item_keep": 300},
    "gnn-alone": {"item_item_keep": 0},
    "distill": {"distill_weight": 0.3, "distill_top": 5},
    "distill-alone": {"distill_weight": 0.3, "distill_top": 5, "item_item_keep": 0},
    "distill-alone-decay": {
        "distill_weight": 0.3,
        "distill_top": 5,
        "distill_rank_decay": 0.6,
        "item_item_keep": 0,
    },
}


def main(argv: list[str] | None = None) -> int:
    from recsys.data.synth import SynthConfig, generate
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig
    from recsys.graph.snapshot import load_snapshot

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--variants", default="default,mf-bpr,softmax", help=f"of {', '.join(VARIANTS)}"
    )
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    end = dt.date(2026, 11, 27)
    with tempfile.TemporaryDirectory() as tmp:
        lake = f"{tmp}/lake"
        generate(
            SynthConfig(
                users=args.users, items=args.items, days=args.days, end_date=end, seed=args.seed
            ),
            lake,
        )
        snapshot = load_snapshot(build_snapshot(lake, end, GraphConfig(window_days=args.days)))
        data = InteractionData.from_snapshot(snapshot)
        evaluator = holdout_evaluator(snapshot)
        print(
            json.dumps(
                {
                    "event": "shop",
                    "users": data.n_users,
                    "items": data.n_items,
                    "train_edges": data.n_interactions,
                    "holdout_users": int(evaluator.users.size),
                }
            ),
            flush=True,
        )
        for name, m in baseline_metrics(snapshot, evaluator).items():
            print(json.dumps({"event": "model", "name": name, **_round(m)}), flush=True)
        for name in args.variants.split(","):
            cfg = TrainConfig.model_validate(
                {
                    **VARIANTS[name],
                    "progress": False,
                    "tracking": {"enabled": False},
                    **({"threads": args.threads} if args.threads else {}),
                }
            )
            t = time.perf_counter()
            result = train(data, cfg)
            seconds = time.perf_counter() - t
            m = model_metrics(result.model, data, cfg, evaluator, result.item_item)
            print(
                json.dumps(
                    {
                        "event": "model",
                        "name": name,
                        "changes": VARIANTS[name],
                        "epochs_run": result.epochs_run,
                        "best_epoch": result.best_epoch,
                        "train_seconds": round(seconds, 1),
                        **_round(m),
                        **{
                            k: v
                            for k, v in result.extra.items()
                            if k in ("blend_weight", "item_item_weight")
                        },
                    }
                ),
                flush=True,
            )
    return 0


def _round(m: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in m.items() if k.split("@")[0] in ("recall", "ndcg")}


if __name__ == "__main__":
    sys.exit(main())
