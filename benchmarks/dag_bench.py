"""Wall time of the whole retrain DAG, step by step (default: 100k users, 20k products, ~5M events).

Run (project-local Airflow with SQLite; see scripts/airflow_env.sh):

    source scripts/airflow_env.sh
    .venv/bin/python benchmarks/dag_bench.py [--users 100000 --items 20000 --days 14
        --events-per-user-day 10 --epochs 20 --lake /tmp/dag-bench]

Generates the lake (timed apart, not part of the DAG), then runs the real DAG
with ``dag.test()`` for the last day, with deploy on and no live server (the
smoke test is then skipped), and prints each task's duration and the total
as one JSON line.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--events-per-user-day", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=20)
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
    cfg = base / "retrain.json"
    train_cfg = base / "train.json"
    train_cfg.write_text(json.dumps({"epochs": args.epochs}))
    cfg.write_text(
        json.dumps({"lake": str(lake), "registry": str(registry), "train_config": str(train_cfg)})
    )
    os.environ["RECSYS_RETRAIN_CONFIG"] = str(cfg)

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["recsys_retrain"]
    day = dt.date.fromisoformat(args.end_date)
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
    events = sum(
        __import__("pyarrow.parquet").parquet.ParquetFile(str(p)).metadata.num_rows
        for p in (lake / "events").glob("dt=*/*.parquet")
    )
    for task_id, s in steps.items():
        print(f"{task_id:18s} {s['state']:16s} {s['seconds']}", file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "dag",
                "users": args.users,
                "items": args.items,
                "events": events,
                "epochs": args.epochs,
                "synth_seconds": round(synth_s, 1),
                "dag_seconds": round(total, 1),
                "state": str(dr.state),
                "steps": steps,
            }
        )
    )
    if not args.lake:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
