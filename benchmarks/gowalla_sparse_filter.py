"""Can PolyFilter be served as a sparse item-item matrix? A probe on validation, never test.

PolyFilter is linear in a user's history, so its scores are ``r_u S`` for one item-item
operator ``S`` (``[I, I]``, dense: 6.7 GB for Gowalla). A server could fold in any
history exactly with a *sparse* ``S``: each item's row cut to its ``M`` largest entries.
This fits PolyFilter (its defaults) on the GNN recipe's carved train pairs (``--config``:
``val_fraction`` and ``seed``), computes ``S`` a block of rows at a time
(:meth:`~recsys.evaluation.baselines.PolyFilter.score_history` of identity rows), keeps
the top ``M`` of each row for each ``--keep`` value, and scores the same validation users as
``benchmarks/gowalla_blend_probe.py`` with the full filter and with each sparse ``S``
(train items masked, Recall@20 / NDCG@20 against the carved pairs). Prints JSON lines.

    python benchmarks/gowalla_sparse_filter.py --config benchmarks/configs/gowalla.toml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from gowalla import DEFAULT_DIR, load_gowalla
from gowalla_blend_probe import recall_ndcg, validation_carve

from recsys.config import load_config
from recsys.evaluation.baselines import PolyFilter
from recsys.item_item import ItemItemTerm, top_entries
from recsys.training.config import TrainConfig

ROWS_PER_BLOCK = 1024


def numbers(text: str, option: str, kind: type[float] | type[int]) -> list[Any]:
    """A comma-separated list of numbers; a malformed one exits naming the option."""
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise SystemExit(f"{option} {text!r}: expected numbers separated by commas") from None


def gnn_embeddings(folder: Path, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The GNN's ``user_emb.npy`` / ``item_emb.npy`` in ``folder``, checked against the data's
    shape before the four minutes of the operator are spent."""
    try:
        users = np.load(folder / "user_emb.npy", allow_pickle=False)
        items = np.load(folder / "item_emb.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--gnn {folder}: {exc}") from None
    if users.ndim != 2 or items.ndim != 2 or users.shape[1] != items.shape[1]:
        raise SystemExit(f"--gnn {folder}: user_emb {users.shape} and item_emb {items.shape}")
    if (len(users), len(items)) != (n_users, n_items):
        raise SystemExit(
            f"--gnn {folder}: embeddings of {len(users)} users x {len(items)} items, the data "
            f"has {n_users} x {n_items}"
        )
    return users, items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder with train/test.txt.gz")
    ap.add_argument("--config", type=Path, default=None, help="TrainConfig file (the carve)")
    ap.add_argument("--keep", default="100,300,1000", help="entries kept per item row")
    ap.add_argument("--users", type=int, default=10_000, help="validation users scored")
    ap.add_argument(
        "--gnn",
        type=Path,
        default=None,
        help="folder with the GNN's user_emb.npy / item_emb.npy (gowalla_blend_probe.py --save): "
        "also score gnn + w * ratio * sparse filter",
    )
    ap.add_argument("--weights", default="1.0,1.5,2.0", help="blend weights w (with --gnn)")
    ap.add_argument(
        "--alpha",
        type=float,
        default=PolyFilter().alpha,
        help="PolyFilter's ideal low-pass weight (0: no SVD, the linear polynomial alone)",
    )
    args = ap.parse_args()
    keeps = numbers(args.keep, "--keep", int)
    weights = numbers(args.weights, "--weights", float) if args.gnn else []
    if min(keeps) < 1 or args.users < 1:
        raise SystemExit("--keep and --users: at least 1")
    _, data = load_gowalla(args.data)
    cfg = load_config(args.config, TrainConfig) if args.config else TrainConfig()
    gnn_users = gnn_items = None
    if args.gnn:
        gnn_users, gnn_items = gnn_embeddings(args.gnn, data.n_users, data.n_items)
    n_items = data.n_items
    _, train_csr, val_csr, users = validation_carve(data, cfg, args.users)
    poly = PolyFilter(alpha=args.alpha)
    t0 = time.perf_counter()
    poly.fit(train_csr)
    kept: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {k: ([], []) for k in keeps}
    eye = sp.identity(n_items, dtype=np.float32, format="csr")
    for s in range(0, n_items, ROWS_PER_BLOCK):
        block = poly.score_history(eye[s : s + ROWS_PER_BLOCK])
        for k in keeps:
            cols, vals = top_entries(block, s, k)
            kept[k][0].append(cols)
            kept[k][1].append(vals)
    operators: dict[int, sp.csr_matrix] = {}
    for k, (cols, vals) in kept.items():
        operators[k] = ItemItemTerm(np.concatenate(cols), np.concatenate(vals)).matrix
    print(json.dumps({"event": "operator", "seconds": round(time.perf_counter() - t0)}), flush=True)
    names = ["full", *(f"top{k}" for k in keeps)]
    names += [f"gnn+{w}*top{k}" for k in keeps for w in weights]
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in names}
    ratio: float | None = None
    for s in range(0, len(users), 1000):
        rows = users[s : s + 1000]
        seen, held = train_csr[rows], val_csr[rows]
        full = poly.score(rows)
        parts["full"].append(recall_ndcg(full, seen, held))
        gnn = None
        if gnn_users is not None and gnn_items is not None:
            gnn = gnn_users[rows] @ gnn_items.T
            # the weight's scale: the spread of the GNN's scores over the full filter's, on
            # the first block (as gowalla_blend_probe.py sets it)
            ratio = ratio or float(gnn.std() / full.std())
        for k in keeps:
            scores = np.asarray((seen @ operators[k]).todense(), dtype=np.float32)
            parts[f"top{k}"].append(recall_ndcg(scores, seen, held))
            for w in weights:
                assert gnn is not None and ratio is not None
                blend = gnn + (w * ratio) * scores
                parts[f"gnn+{w}*top{k}"].append(recall_ndcg(blend, seen, held))
    for name, ps in parts.items():
        k = int(name.rpartition("top")[2]) if "top" in name else None
        print(
            json.dumps(
                {
                    "event": "sparse_filter",
                    "scorer": name,
                    "users": len(users),
                    "val_recall@20": round(float(np.concatenate([p[0] for p in ps]).mean()), 5),
                    "val_ndcg@20": round(float(np.concatenate([p[1] for p in ps]).mean()), 5),
                    "operator_mib": None if k is None else round(n_items * k * 8 / 2**20, 1),
                    "ratio": ratio,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
