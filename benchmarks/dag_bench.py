"""Wall time of the whole retrain DAG, step by step, and the quality of its model
(default: 100k users, 20k products, ~5M events).

Run (project-local Airflow with SQLite; see scripts/airflow_env.sh):

    source scripts/airflow_env.sh
    .venv/bin/python benchmarks/dag_bench.py [--users 100000 --items 20000 --days 14
        --events-per-user-day 10 --budget 420 --lake /tmp/dag-bench]

Generates the lake (timed apart, not part of the DAG), then runs the real DAG with
``dag.test()`` for the last two days, as a daily schedule does: the day before (no
production yet: a cold start under the DAG's time budget, deployed), then the last day
(a warm start from the day before's model, the default when one exists). Deploy is on with
no live server (the smoke test is then skipped). Each run prints its task durations; then,
unless ``--no-reference``, a from-scratch model is trained on the last day's snapshot with
the training defaults and no time budget (to convergence: the full cosine schedule with
early stopping on validation), and the last JSON line compares the DAG's model with it
(holdout NDCG@20 and Recall@20, same snapshot, same holdout). The epochs are the training
config's own (no ``--epochs`` cut unless given).
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
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--events-per-user-day", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's")
    ap.add_argument("--budget", type=float, default=420.0, help="the DAG's train_budget_s")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--end-date", default="2026-11-27")
    ap.add_argument("--lake", default=None, help="reuse or keep this lake (default: a temp dir)")
    args = ap.parse_args()

    base = Path(args.lake or tempfile.mkdtemp(prefix="dag-bench-"))
    lake, registry = base / "lake", base / "registry"
    synth_s = 0.0
    if not (lake / "events").exists():
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "recsys.cli",
                "synth",
                "--out",
                str(lake),
                "--users",
                str(args.users),
                "--items",
                str(args.items),
                "--days",
                str(args.days),
                "--end-date",
                args.end_date,
                "--events-per-user-day",
                str(args.events_per_user_day),
            ],
            check=True,
        )
        synth_s = time.perf_counter() - t0
    shutil.rmtree(registry, ignore_errors=True)
    shutil.rmtree(lake / "models", ignore_errors=True)
    cfg = base / "retrain.json"
    train_cfg = base / "train.json"
    train_cfg.write_text(json.dumps({} if args.epochs is None else {"epochs": args.epochs}))
    cfg.write_text(
        json.dumps(
            {
                "lake": str(lake),
                "registry": str(registry),
                "train_config": str(train_cfg),
                "train_budget_s": args.budget,
            }
        )
    )
    os.environ["RECSYS_RETRAIN_CONFIG"] = str(cfg)
    events = sum(
        pq.ParquetFile(str(p)).metadata.num_rows for p in (lake / "events").glob("dt=*/*.parquet")
    )
    last = dt.date.fromisoformat(args.end_date)
    runs = [run_dag(last - dt.timedelta(days=1)), run_dag(last)]
    for r in runs:
        print(
            json.dumps(
                {
                    "bench": "dag",
                    "users": args.users,
                    "items": args.items,
                    "events": events,
                    "budget_s": args.budget,
                    "synth_seconds": round(synth_s, 1),
                    "loadavg": round(os.getloadavg()[0], 2),
                    **r,
                }
            ),
            flush=True,
        )
    if not args.no_reference:
        print(json.dumps(reference(lake, last, runs[-1])), flush=True)
    if not args.lake:
        shutil.rmtree(base, ignore_errors=True)


def run_dag(day: dt.date) -> dict[str, Any]:
    """One DAG run for ``day``: its state, wall time, task durations and model."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from recsys.orchestration.paths import run_paths
    from recsys.training.artifact import read_metrics

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["recsys_retrain"]
    t0 = time.perf_counter()
    dr = dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    total = time.perf_counter() - t0
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dr.run_id
            )
        ).all()
        steps = {
            ti.task_id: {
                "state": str(ti.state),
                "seconds": round((ti.end_date - ti.start_date).total_seconds(), 1)
                if ti.start_date and ti.end_date
                else None,
            }
            for ti in sorted(
                tis, key=lambda t: t.start_date or dt.datetime.max.replace(tzinfo=dt.UTC)
            )
        }
    for task_id, st in steps.items():
        print(f"{day} {task_id:18s} {st['state']:16s} {st['seconds']}", file=sys.stderr)
    cfg = json.loads(Path(os.environ["RECSYS_RETRAIN_CONFIG"]).read_text())
    paths = run_paths(day, cfg["lake"], cfg["registry"])
    metrics = read_metrics(paths.model)
    return {
        "day": day.isoformat(),
        "state": str(dr.state),
        "dag_seconds": round(total, 1),
        "start": metrics.get("start", {}).get("mode"),
        "epochs_run": metrics.get("epochs_run"),
        "holdout": _headline(metrics.get("holdout", {})),
        "graph": paths.graph,
        "steps": steps,
    }


def _headline(holdout: dict[str, float]) -> dict[str, float]:
    return {k: round(holdout[k], 4) for k in ("ndcg@20", "recall@20") if k in holdout}


def reference(lake: Path, day: dt.date, dag_run: dict[str, Any]) -> dict[str, Any]:
    """A from-scratch model on the DAG's snapshot of ``day``, trained to convergence."""
    from recsys.artifacts import manifest_sha256
    from recsys.training.artifact import read_metrics
    from recsys.training.config import TrainConfig
    from recsys.training.run import train_on_snapshot

    out = Path(lake.parent / f"reference-{day}")
    cfg = TrainConfig.model_validate({"tracking": {"enabled": False}, "progress": False})
    s: dict[str, Any]
    kept = json.loads((out / "model.json").read_text()) if (out / "model.json").exists() else {}
    if kept.get("graph_sha256") == manifest_sha256(dag_run["graph"]) and kept.get(
        "train_config"
    ) == cfg.model_dump(mode="json"):
        # the same snapshot (by content) and config: the model is a function of them and the
        # seed, so a run that kept its lake reuses it (its training time is not in the artifact)
        m = read_metrics(str(out))
        s = {"holdout": m["holdout"], "epochs_run": m["epochs_run"], "train_seconds": None}
        s["reused"] = True
    else:
        shutil.rmtree(out, ignore_errors=True)
        s = train_on_snapshot(dag_run["graph"], str(out), cfg)
    ref = _headline(s["holdout"])
    dag_ndcg = dag_run["holdout"].get("ndcg@20", float("nan"))
    return {
        "bench": "dag_vs_from_scratch",
        "day": day.isoformat(),
        "dag": {
            "start": dag_run["start"],
            "epochs_run": dag_run["epochs_run"],
            **dag_run["holdout"],
        },
        "from_scratch": {
            "epochs_run": s["epochs_run"],
            "train_seconds": s["train_seconds"],
            "reused": s.get("reused", False),
            **ref,
        },
        "dag_over_from_scratch_ndcg": round(dag_ndcg / ref["ndcg@20"], 4),
        "dag_seconds": dag_run["dag_seconds"],
    }


if __name__ == "__main__":
    main()
