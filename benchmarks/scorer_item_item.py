"""What the item-item term costs the ONNX scorer: one user's query with and without it.

Random tables of Gowalla's shape by default (40,981 items, d=256: the recipe's model;
300 entries per item: the default term), one onnxruntime thread as the server runs it,
single-user queries at several history lengths, the two scorers taking turns so that the
machine's noise falls on both. One JSON line per history length (p50 / p99 in ms and the
ratio), then the scorer sizes.

    python benchmarks/scorer_item_item.py [--items 40981] [--dim 256] [--keep 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from recsys.item_item import ItemItemTerm
from recsys.scorer import build_scorer
from recsys.sessions import scorer_session


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=40981)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--keep", type=int, default=300)
    ap.add_argument("--lengths", default="10,30,100,300", help="history lengths to query")
    ap.add_argument("--queries", type=int, default=300, help="queries per length and scorer")
    args = ap.parse_args(argv)
    for name in ("items", "dim", "keep", "queries"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if args.keep >= args.items:
        ap.error("--keep must be below --items")
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
    except ValueError:
        ap.error(f"--lengths: comma-separated integers, got {args.lengths!r}")
    if not lengths or min(lengths) < 1:
        ap.error("--lengths: each at least 1")

    rng = np.random.default_rng(0)
    n, d = args.items, args.dim
    item_s = rng.standard_normal((n, d), dtype=np.float32)
    item_final = rng.standard_normal((n, d), dtype=np.float32)
    deg = rng.uniform(0.05, 1.0, n).astype(np.float32)
    term = ItemItemTerm(
        rng.integers(0, n, (n, args.keep)).astype(np.int32),
        rng.standard_normal((n, args.keep), dtype=np.float32),
    )
    plain = build_scorer(item_s, item_final, deg, 3).SerializeToString()
    with_term = build_scorer(item_s, item_final, deg, 3, term).SerializeToString()
    sessions = {"embeddings": scorer_session(plain), "with_term": scorer_session(with_term)}
    for length in lengths:
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for q in range(args.queries + 20):
            hist = rng.choice(n, size=min(length, n), replace=False)
            feeds = {
                "e0": rng.standard_normal((1, d), dtype=np.float32),
                "hist_idx": hist[None, :].astype(np.int64),
                "hist_w": rng.uniform(0.5, 2.0, (1, hist.size)).astype(np.float32),
                "excl_idx": hist[None, :].astype(np.int64),
                "k": np.array([20], dtype=np.int64),
            }
            for name, sess in sessions.items():  # taking turns: the same noise on both
                t0 = time.perf_counter()
                sess.run(["scores", "indices"], feeds)
                if q >= 20:  # the first queries warm the allocator and caches
                    times[name].append(time.perf_counter() - t0)
        row: dict[str, object] = {"bench": "scorer_item_item", "history": length}
        for name, ts in times.items():
            row[f"{name}_p50_ms"] = round(float(np.percentile(ts, 50)) * 1e3, 3)
            row[f"{name}_p99_ms"] = round(float(np.percentile(ts, 99)) * 1e3, 3)
        row["p50_ratio"] = round(
            float(np.percentile(times["with_term"], 50) / np.percentile(times["embeddings"], 50)),
            3,
        )
        print(json.dumps(row), flush=True)
    print(
        json.dumps(
            {
                "bench": "scorer_item_item.size",
                "items": n,
                "dim": d,
                "keep": args.keep,
                "scorer_mib": round(len(plain) / 2**20, 1),
                "scorer_with_term_mib": round(len(with_term) / 2**20, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
