"""Benchmark of ``recsys build-graph``: build time and peak RSS per number of events.

Writes a synthetic lake per size (numpy + pyarrow, Zipf item popularity, a
view-heavy event mix, 30 daily partitions, users/items dimension tables),
then builds the snapshot in a fresh child process per engine and measures its peak
memory: ``wait4``'s peak RSS for the local engine; for ``--engine spark`` (PySpark in local
mode: the JVM holds the driver and the executors) the peak of the summed RSS of the Python
driver and its JVM, sampled every 0.1 s. Prints one JSON line per size and engine; with both
engines, one more line comparing their snapshots (manifests but for ``engine``, weights).

    .venv/bin/python benchmarks/graph_build.py --events 1000000 5000000 10000000
    .venv/bin/python benchmarks/graph_build.py --events 1000000 10000000 --engine local spark

``--lightgcn DIR`` instead imports a LightGCN-format split (``train.txt.gz``,
``test.txt.gz``, e.g. Gowalla), builds its snapshot and checks that the train
edges and the 1-day holdout reproduce the split exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

END = dt.date(2026, 11, 27)
DAYS = 30
MIX = {"view": 0.6, "click": 0.2, "add_to_cart": 0.1, "purchase": 0.08, "rating": 0.02}


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(idx), pa.string()), "")


def make_lake(lake: str, n_events: int, seed: int = 0) -> None:
    from recsys.data.lake import write_partition
    from recsys.data.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA

    rng = np.random.default_rng(seed)
    n_users = max(n_events // 20, 100)
    n_items = max(n_events // 100, 50)
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_p /= item_p.sum()
    types = np.array(list(MIX), dtype=object)
    per_day = n_events // DAYS
    for d in range(DAYS):
        day = END - dt.timedelta(days=DAYS - 1 - d)
        n = per_day if d < DAYS - 1 else n_events - per_day * (DAYS - 1)
        t = rng.choice(len(types), size=n, p=list(MIX.values()))
        start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1e6)
        value = np.where(types[t] == "rating", rng.integers(1, 6, n), np.nan)
        table = pa.table(
            {
                "event_id": _ids(f"e{d}-", np.arange(n)),
                "user_id": _ids("u", rng.integers(0, n_users, n)),
                "item_id": _ids("i", rng.choice(n_items, size=n, p=item_p)),
                "event_type": pa.array(types[t], pa.string()),
                "value": pa.array(value, pa.float64(), from_pandas=True),
                "ts": pa.array(start + rng.integers(0, 86_400_000_000, n)).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            },
            schema=EVENTS_SCHEMA,
        )
        write_partition(lake, "events", day, table)
    users = pa.table(
        {
            "user_id": _ids("u", np.arange(n_users)),
            "age": rng.integers(18, 80, n_users).astype(np.float64),
            "country": pa.array(
                rng.choice(np.array(["DE", "FR", "US", "PL"], dtype=object), n_users)
            ),
            "signup_date": pa.array(np.full(n_users, END - dt.timedelta(days=400)), pa.date32()),
        },
        schema=USERS_SCHEMA,
    )
    items = pa.table(
        {
            "item_id": _ids("i", np.arange(n_items)),
            "category": _ids("c", rng.integers(0, 50, n_items)),
            "price": rng.lognormal(3, 1, n_items),
            "rating": rng.uniform(1, 5, n_items),
            "created_date": pa.array(np.full(n_items, END - dt.timedelta(days=100)), pa.date32()),
        },
        schema=ITEMS_SCHEMA,
    )
    write_partition(lake, "users", END, users)
    write_partition(lake, "items", END, items)


def child(lake: str, engine: str) -> None:
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig
    from recsys.graph.snapshot import snapshot_uri
    from recsys.logs import setup_logging

    setup_logging("INFO")
    out = snapshot_uri(f"{lake}/{engine}", END)
    t0 = time.perf_counter()
    session = 0.0
    if engine == "spark":
        from recsys.graph.spark_build import build_snapshot_spark
        from recsys.spark import get_spark

        spark = get_spark()
        session = time.perf_counter() - t0
        t0 = time.perf_counter()
        uri = build_snapshot_spark(lake, END, GraphConfig(window_days=DAYS), out=out, spark=spark)
    else:
        uri = build_snapshot(lake, END, GraphConfig(window_days=DAYS), out=out)
    print(
        json.dumps(
            {
                "uri": uri,
                "seconds": round(time.perf_counter() - t0, 2),
                "session_seconds": round(session, 2),
            }
        )
    )


def _tree_usage(pid: int, cpu: dict[int, float]) -> int:
    """RSS of a process and its descendants (the Python driver and its JVM), bytes; records
    each one's CPU seconds so far in ``cpu`` (pid -> user + system)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
    return total


def run_build(lake: str, engine: str) -> dict[str, object]:
    """One build in a fresh child process: its timings and peak memory."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", lake, "--engine", engine],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "RECSYS_SPARK_DRIVER_MEMORY": "6g"},
    )
    peak = [0]
    cpu: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_usage(proc.pid, cpu))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{engine} build failed for {lake} (status {status})")
    res = json.loads(out.strip().splitlines()[-1])
    return {
        "uri": res["uri"],
        "build_seconds": res["seconds"],
        "session_seconds": res["session_seconds"],
        "process_seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # the Python process
        # with its JVM (spark), as last sampled: a lower bound by at most 0.1 s of work
        "tree_cpu_seconds": round(max(sum(cpu.values()), usage.ru_utime + usage.ru_stime), 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB; the Python process
        "peak_tree_rss_mb": round(peak[0] / 2**20, 1),  # with its JVM (spark)
    }


def compare(local_uri: str, spark_uri: str) -> dict[str, object]:
    """How the two engines' snapshots differ: manifests (but for engine), weights."""
    from recsys.artifacts import read_manifest
    from recsys.graph.snapshot import load_snapshot

    ma = read_manifest(local_uri).model_dump(mode="json")
    mb = read_manifest(spark_uri).model_dump(mode="json")
    engine = mb["extra"].pop("engine", None)
    a, b = load_snapshot(local_uri), load_snapshot(spark_uri)
    same_pairs = bool(
        np.array_equal(a.train_user, b.train_user) and np.array_equal(a.train_item, b.train_item)
    )
    return {
        "compare": "local vs spark",
        "spark_engine_field": engine,
        "manifests_equal_but_engine": ma == mb,
        "files_differing": sorted(k for k in ma["files"] if ma["files"][k] != mb["files"].get(k)),
        "edges_equal": same_pairs,
        "max_weight_diff": float(np.abs(a.train_weight - b.train_weight).max())
        if same_pairs and len(a.train_weight)
        else None,
        "weights_bit_different": int((a.train_weight != b.train_weight).sum())
        if same_pairs
        else None,
        "holdout_equal": bool(
            np.array_equal(a.holdout_user, b.holdout_user)
            and np.array_equal(a.holdout_item, b.holdout_item)
        ),
    }


def lightgcn(data: Path, work: Path) -> None:
    from recsys.data.importers import import_lightgcn
    from recsys.data.lightgcn import load_lightgcn
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig
    from recsys.graph.snapshot import load_snapshot

    lake = str(work / "lake-lightgcn")
    shutil.rmtree(lake, ignore_errors=True)
    train, test = data / "train.txt.gz", data / "test.txt.gz"
    import_lightgcn(train, test, lake, END)
    t0 = time.perf_counter()
    uri = build_snapshot(lake, END, GraphConfig())
    seconds = time.perf_counter() - t0
    s = load_snapshot(uri)
    split = load_lightgcn(train, test)
    uid, iid = s.user_ids.astype(np.int64), s.item_ids.astype(np.int64)

    def pairs(u: np.ndarray, i: np.ndarray) -> set[tuple[int, int]]:
        return set(zip(u.tolist(), i.tolist(), strict=True))

    same_train = pairs(uid[s.train_user], iid[s.train_item]) == pairs(
        split.train_user, split.train_item
    )
    same_test = pairs(uid[s.holdout_user], iid[s.holdout_item]) == pairs(
        split.test_user, split.test_item
    )
    print(
        json.dumps(
            {
                "dataset": str(data),
                "build_seconds": round(seconds, 2),
                "users": s.n_users,
                "items": s.n_items,
                "train_edges": s.n_edges,
                "holdout_pairs": len(s.holdout_user),
                "train_equals_split": same_train,
                "holdout_equals_test": same_test,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000])
    ap.add_argument(
        "--workdir", default=None, help="Folder for the synthetic lakes (default: a temp dir)"
    )
    ap.add_argument("--lightgcn", type=Path, default=None, help="LightGCN split folder to check")
    ap.add_argument(
        "--engine",
        nargs="+",
        default=["local"],
        choices=["local", "spark"],
        help="Engines to build each lake with, in this order (same run)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.engine[0])
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="graph-bench-"))
    if args.lightgcn:
        lightgcn(args.lightgcn, work)
        return
    for n in args.events:
        lake = str(work / f"lake-{n}")
        if not Path(lake, "events").exists():
            t0 = time.perf_counter()
            make_lake(lake, n)
            print(
                json.dumps({"events": n, "synth_seconds": round(time.perf_counter() - t0, 1)}),
                flush=True,
            )
        built: dict[str, str] = {}
        for engine in args.engine:
            shutil.rmtree(Path(lake, engine), ignore_errors=True)
            res = run_build(lake, engine)
            built[engine] = str(res.pop("uri"))
            manifest = json.loads(Path(built[engine], "manifest.json").read_text())
            c = manifest["counts"]
            print(
                json.dumps(
                    {
                        "events": n,
                        "engine": engine,
                        **res,
                        "load_avg_1m": round(os.getloadavg()[0], 1),
                        "users": c["users"],
                        "items": c["items"],
                        "edges": c["edges"],
                        "holdout_pairs": c["holdout_pairs"],
                    }
                ),
                flush=True,
            )
        if {"local", "spark"} <= set(built):
            print(json.dumps({"events": n, **compare(built["local"], built["spark"])}), flush=True)


if __name__ == "__main__":
    main()
