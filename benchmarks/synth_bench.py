"""Time and peak memory to generate a synthetic lake (default: about 5M events).

Run: .venv/bin/python benchmarks/synth_bench.py [--users N --items M --days D]
Prints one JSON line with the measured numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import tempfile
import time

from recsys.data.synth import SynthConfig, generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=290_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cfg = SynthConfig(
        users=args.users,
        items=args.items,
        days=args.days,
        end_date=dt.date(2026, 11, 27),
        seed=args.seed,
    )
    out = tempfile.mkdtemp(prefix="synth-bench-")
    try:
        t0 = time.perf_counter()
        summary = generate(cfg, out)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "bench": "synth",
                "users": cfg.users,
                "items": cfg.items,
                "days": cfg.days,
                "events": summary.events,
                "seconds": round(seconds, 2),
                "events_per_second": round(summary.events / seconds),
                "peak_rss_mib": round(peak_mib),
            }
        )
    )


if __name__ == "__main__":
    main()
