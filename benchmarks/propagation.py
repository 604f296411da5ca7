"""LightGCN propagation on Gowalla's adjacency: int32 CSR indices (as built) vs int64.

Times the training's propagation op (:func:`recsys.models.propagation.mean_of_powers`,
forward and its adjoint backward) on the normalised adjacency of Gowalla's train pairs
(70,839 nodes, 1.62M nonzeros) as :func:`recsys.models.adjacency.normalized_adjacency`
builds it (32-bit indices) and, as the baseline in the same run, the same matrix with
64-bit indices (what ``to_sparse_csr`` gives, and what the adjacency was before). The two
take turns; the median of each is printed with their ratio, and whether the outputs are
bitwise equal.

    python benchmarks/propagation.py --threads 2 --dim 256 --layers 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from gowalla import DEFAULT_DIR, load_gowalla

from recsys.models.adjacency import normalized_adjacency
from recsys.models.propagation import mean_of_powers


def timed(a: torch.Tensor, x: torch.Tensor, layers: int) -> float:
    x.grad = None
    t0 = time.perf_counter()
    mean_of_powers(a, x, layers).sum().backward()  # type: ignore[no-untyped-call]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder with train/test.txt.gz")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, data = load_gowalla(args.data)
    adj = normalized_adjacency(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items
    )
    a32 = adj.matrix
    a64 = torch.sparse_csr_tensor(
        a32.crow_indices().long(), a32.col_indices().long(), a32.values(), a32.shape
    )
    x = torch.randn(a32.shape[0], args.dim, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"int64": [], "int32": []}
    for a in (a64, a32):  # warm-up
        timed(a, x, args.layers)
    for _ in range(args.repeats):
        times["int64"].append(timed(a64, x, args.layers))
        times["int32"].append(timed(a32, x, args.layers))
    with torch.no_grad():
        same = torch.equal(mean_of_powers(a32, x, args.layers), mean_of_powers(a64, x, args.layers))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "benchmark": "propagation",
                "nodes": int(a32.shape[0]),
                "nonzeros": int(a32.values().numel()),
                "dim": args.dim,
                "layers": args.layers,
                "threads": torch.get_num_threads(),
                "fwd_bwd_s_int64": round(med["int64"], 4),
                "fwd_bwd_s_int32": round(med["int32"], 4),
                "speedup": round(med["int64"] / med["int32"], 3),
                "bitwise_equal": same,
                "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
