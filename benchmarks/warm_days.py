"""Quality and training time over consecutive days: warm-started vs from-scratch models.

    .venv/bin/python benchmarks/warm_days.py [--users 20000 --items 4000 --days 5
        --history-days 21 --out benchmarks/warm_days.png]

A synthetic shop (``recsys synth``: users and products arrive over the period, so every day
brings new ones) is generated once; then, for each of the last ``--days`` days, the
pipeline's own steps run as the daily DAG runs them: the day's graph snapshot (extending the
previous one's id maps and feature encoding), then two trainings on it: **cold** (the
training config's full schedule from a fresh initialisation) and **warm** (``--init-from``
yesterday's warm model, the warm schedule). Each prints one JSON line with the holdout
NDCG@20 / Recall@20 of both, their training seconds and epochs; a PNG plots them per day.
The machine is shared: compare the two in the same run, not across runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=4_000)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--history-days", type=int, default=21, help="days before the first one")
    ap.add_argument("--end-date", default="2026-11-27")
    ap.add_argument("--epochs", type=int, default=20, help="cold schedule")
    ap.add_argument("--warm-epochs", type=int, default=None, help="default: TrainConfig's")
    ap.add_argument("--warm-lr-scale", type=float, default=None)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--work", default=None, help="kept after the run (default: a temporary folder, removed)"
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "warm_days.png"))
    args = ap.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="warm-days-"))
    try:
        rows = _days(args, work)
    finally:
        if args.work is None:  # a lake and two models a day
            shutil.rmtree(work, ignore_errors=True)
    plot(rows, args.out)


def _days(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """The shop's lake in ``work``, then a cold and a warm model for each of the last days."""
    from recsys.graph.build import build_snapshot
    from recsys.training.config import TrainConfig
    from recsys.training.run import train_on_snapshot

    lake = str(work / "lake")
    end = dt.date.fromisoformat(args.end_date)
    total_days = args.days + args.history_days
    subprocess.run(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "synth",
            "--out",
            lake,
            "--users",
            str(args.users),
            "--items",
            str(args.items),
            "--days",
            str(total_days),
            "--end-date",
            end.isoformat(),
        ],
        check=True,
        capture_output=True,
    )
    overrides: dict[str, Any] = {
        "epochs": args.epochs,
        "embedding_dim": args.dim,
        "threads": args.threads,
        "progress": False,
        "tracking": {"enabled": False},
    }
    if args.warm_epochs is not None:
        overrides["warm_epochs"] = args.warm_epochs
    if args.warm_lr_scale is not None:
        overrides["warm_lr_scale"] = args.warm_lr_scale
    cfg = TrainConfig.model_validate(overrides)
    rows: list[dict[str, Any]] = []
    warm_model: str | None = None
    for k in range(args.days):
        day = end - dt.timedelta(days=args.days - 1 - k)
        graph = build_snapshot(lake, day)
        res: dict[str, Any] = {"bench": "warm_days", "day": day.isoformat()}
        for mode in ("cold", "warm"):
            out = str(work / f"model-{mode}-{day}")
            init = warm_model if mode == "warm" else None
            s = train_on_snapshot(graph, out, cfg, init_from=init)
            res[mode] = {
                "start": s["start"]["mode"],
                "ndcg@20": round(s["holdout"].get("ndcg@20", float("nan")), 4),
                "recall@20": round(s["holdout"].get("recall@20", float("nan")), 4),
                "train_seconds": s["train_seconds"],
                "epochs_run": s["epochs_run"],
                "users_new": s["start"].get("users_new", 0),
            }
            if mode == "warm":
                warm_model = out
        res["warm_over_cold_ndcg"] = round(res["warm"]["ndcg@20"] / res["cold"]["ndcg@20"], 3)
        res["warm_over_cold_seconds"] = round(
            res["warm"]["train_seconds"] / res["cold"]["train_seconds"], 3
        )
        res["loadavg"] = round(os.getloadavg()[0], 2)
        rows.append(res)
        print(json.dumps(res), flush=True)
    return rows


def plot(rows: list[dict[str, Any]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = [r["day"][5:] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for mode, style in (("cold", "o-"), ("warm", "s-")):
        a.plot(days, [r[mode]["ndcg@20"] for r in rows], style, label=mode)
        b.plot(days, [r[mode]["train_seconds"] for r in rows], style, label=mode)
    a.set_title("holdout NDCG@20")
    b.set_title("training seconds")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(json.dumps({"bench": "warm_days_plot", "png": out}), flush=True)


if __name__ == "__main__":
    main()
