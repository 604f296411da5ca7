"""Time and peak memory of the data-quality gate on a 1M-event partition.

Builds a local lake with a fast numpy generator (``--events`` rows on the
validated day, ``--history`` trailing days of the same size, users and items
snapshots), then runs ``run_gate`` in a fresh process per setting so that the
peak RSS is the gate's alone. Prints one JSON line per measurement.

    .venv/bin/python benchmarks/validate_bench.py [--events 1000000] [--history 3]
    .venv/bin/python benchmarks/validate_bench.py --synth-users 500000   # recsys synth's shop
    .venv/bin/python benchmarks/validate_bench.py --engine local spark   # both data engines

With ``--engine spark`` the gate runs on PySpark in local mode (the JVM holds the driver and
the executors): memory and CPU are the process tree's (Python + JVM), sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
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
TYPES = np.array(["view", "click", "add_to_cart", "purchase", "rating"])
MIX = np.array([0.6, 0.22, 0.1, 0.06, 0.02])


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(idx), pa.string()), "")


def _events(rng: np.random.Generator, day: dt.date, n: int, users: int, items: int) -> pa.Table:
    start = int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC).timestamp() * 1e6)
    types = TYPES[rng.choice(len(TYPES), n, p=MIX)]
    value = np.where(types == "rating", rng.integers(1, 6, n).astype(float), np.nan)
    return pa.table(
        {
            "event_id": _ids(f"e{day:%Y%m%d}-", np.arange(n)),
            "user_id": _ids("u", rng.integers(0, users, n)),
            "item_id": _ids("i", (rng.pareto(1.2, n) * 50).astype(np.int64) % items),
            "event_type": pa.array(types),
            "value": pa.array(value, from_pandas=True),
            "ts": pa.array(
                np.sort(start + rng.integers(0, 86_400_000_000, n)), pa.timestamp("us", tz="UTC")
            ),
        }
    )


def build_lake(lake: str, events: int, history: int, users: int, items: int) -> None:
    from recsys.data.lake import write_partition

    rng = np.random.default_rng(0)
    dim_users = pa.table(
        {
            "user_id": _ids("u", np.arange(users)),
            "age": rng.integers(18, 80, users).astype(float),
            "country": pa.array(rng.choice(["DE", "FR", "US", "JP"], users)),
            "signup_date": pa.array([dt.date(2025, 1, 1)] * users, pa.date32()),
        }
    )
    dim_items = pa.table(
        {
            "item_id": _ids("i", np.arange(items)),
            "category": pa.array(rng.choice(["books", "home", "toys"], items)),
            "price": rng.lognormal(3, 1, items),
            "rating": rng.uniform(1, 5, items),
            "created_date": pa.array([dt.date(2025, 1, 1)] * items, pa.date32()),
        }
    )
    for back in range(history, -1, -1):
        day = END - dt.timedelta(days=back)
        write_partition(lake, "events", day, _events(rng, day, events, users, items))
    write_partition(lake, "users", END, dim_users)
    write_partition(lake, "items", END, dim_items)


def _cpu() -> float:
    """CPU seconds of this process: steadier than wall time on a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class _TreeSampler:
    """Peak RSS and CPU seconds of this process and its children (PySpark's JVM)."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import contextlib
        import os

        import psutil

        me = psutil.Process(os.getpid())
        while not self.done.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[p.pid] = t.user + t.system
            self.peak = max(self.peak, total)
            self.done.wait(0.1)

    def stop(self) -> tuple[float, float]:
        self.done.set()
        self.thread.join()
        return self.peak / 2**20, sum(self.cpu.values())


def measure(lake: str, data_docs: bool, engine: str = "local") -> dict[str, object]:
    """Runs in a child process: import, gate, peak RSS of this process (and its JVM)."""
    sampler = _TreeSampler()
    t0 = time.perf_counter()
    from recsys.validation.gate import ValidationConfig, run_gate

    session_s = 0.0
    if engine == "spark":
        from recsys.spark import get_spark

        ts = time.perf_counter()
        get_spark()
        session_s = time.perf_counter() - ts
    t1 = time.perf_counter()
    cfg = ValidationConfig(data_docs=data_docs)
    result = run_gate(lake, END, None, cfg, engine=engine)
    t2 = time.perf_counter()
    cpu_cold = _cpu()
    rss_cold = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tree_rss_cold, tree_cpu_cold = sampler.peak / 2**20, sum(sampler.cpu.values())
    # a second run in the same process: great-expectations already imported and warm
    warm = run_gate(lake, END, None, cfg, engine=engine)
    t3 = time.perf_counter()
    tree_rss, tree_cpu = sampler.stop()
    return {
        "bench": "validate",
        "engine": engine,
        "events": result.counts["events"],
        "data_docs": data_docs,
        "passed": result.passed,
        "checks": len(result.checks),
        "import_s": round(t1 - t0 - session_s, 2),
        "session_s": round(session_s, 2),
        "gate_s": round(t2 - t1, 2),
        "warm_gate_s": round(t3 - t2, 2),
        "cpu_s": round(cpu_cold, 2),
        "warm_cpu_s": round(_cpu() - cpu_cold, 2),
        "tree_cpu_s": round(tree_cpu_cold, 2),
        "warm_tree_cpu_s": round(tree_cpu - tree_cpu_cold, 2),
        "warm_stages_s": warm.timings,
        "peak_rss_mib": round(rss_cold, 1),
        "peak_rss_mib_after_warm_run": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
        "peak_tree_rss_mib": round(tree_rss_cold, 1),
        "peak_tree_rss_mib_after_warm_run": round(tree_rss, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--history", type=int, default=3, help="trailing days of the same size")
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument(
        "--synth-users", type=int, help="build the lake with recsys.data.synth instead (slower)"
    )
    ap.add_argument(
        "--engine",
        nargs="+",
        default=["local"],
        choices=["local", "spark"],
        help="data engines to measure, in this order (same lake, same run)",
    )
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # child mode: LAKE
    ap.add_argument("--no-docs", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, not args.no_docs, args.engine[0])), flush=True)
        return
    tmp = tempfile.mkdtemp(prefix="validate-bench-")
    try:
        lake = str(Path(tmp) / "lake")
        t0 = time.perf_counter()
        if args.synth_users:
            from recsys.data.synth import SynthConfig, generate

            cfg = SynthConfig(users=args.synth_users, items=args.items, days=args.history + 1,
                              end_date=END, seed=1)  # fmt: skip
            generate(cfg, lake)
            source = "synth"
        else:
            build_lake(lake, args.events, args.history, args.users, args.items)
            source = "numpy"
        print(json.dumps({"bench": "validate.build_lake", "source": source,
                          "days": args.history + 1, "seconds": round(time.perf_counter() - t0, 2)}),
              flush=True)  # fmt: skip
        for engine, flags in [(e, f) for e in args.engine for f in ([], ["--no-docs"])]:
            cmd = [sys.executable, __file__, "--measure", lake, "--engine", engine, *flags]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
