"""Time ``export_from_model`` (tables, export gate, bundle write) on a Gowalla-sized model.

    .venv/bin/python benchmarks/export_bench.py [--users 29858 --items 40981 --edges 810128]

A randomly initialised FeatureLightGCN (id embeddings only, d=64, K=3) on random
edges: the export's cost depends on the sizes only. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.artifacts import read_manifest
from recsys.export.export import export_from_model
from recsys.export.gate import ExportConfig
from recsys.graph.features import FeatureSpec, TableSpec
from recsys.graph.snapshot import GraphSnapshot
from recsys.models.lightgcn import FeatureLightGCN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=29858)
    ap.add_argument("--items", type=int, default=40981)
    ap.add_argument("--edges", type=int, default=810128)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    empty = TableSpec(numeric=[], categorical=[])
    snap = GraphSnapshot(
        uri="memory://bench",
        as_of=dt.date(2026, 11, 27),
        user_ids=np.array([f"u{j}" for j in range(args.users)]),
        item_ids=np.array([f"i{j}" for j in range(args.items)]),
        train_user=rng.integers(0, args.users, args.edges),
        train_item=(rng.zipf(1.3, args.edges) - 1) % args.items,
        train_weight=np.ones(args.edges, dtype=np.float32),
        holdout_user=np.zeros(0, np.int64),
        holdout_item=np.zeros(0, np.int64),
        user_features=np.zeros((args.users, 0), np.float32),
        item_features=np.zeros((args.items, 0), np.float32),
        feature_spec=FeatureSpec(users=empty, items=empty),
        items=pd.DataFrame(
            {
                "item_idx": np.arange(args.items),
                "item_id": [f"i{j}" for j in range(args.items)],
                "category": [f"c{j % 50}" for j in range(args.items)],
                "price": 1.0,
            }
        ),
    )
    torch.manual_seed(0)
    model = FeatureLightGCN(args.users, args.items, args.dim, args.layers)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "bundle")
        t0 = time.perf_counter()
        res = export_from_model(model, snap, out, ExportConfig(k=100), "bench")
        wall = time.perf_counter() - t0
        size = sum(e.bytes for e in read_manifest(out).files.values())
    print(
        json.dumps(
            {
                "bench": "export",
                "users": args.users,
                "items": args.items,
                "edges": args.edges,
                "dim": args.dim,
                "layers": args.layers,
                "seconds": round(wall, 1),
                "bundle_mib": round(size / 2**20, 1),
                **{
                    k: (float(f"{v:.3g}") if isinstance(v, float) else v)
                    for k, v in res.metrics.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
