"""Would a GNN + PolyFilter blend pay? A probe on the GNN's own validation carve, never test.

Trains the recipe of record (``--config``) without the validation fold, so the model has not
seen the 5 % validation carve, fits :class:`recsys.evaluation.baselines.PolyFilter` (its
defaults) on the same carved train pairs, and scores ``--users`` validation users with
``gnn + w * ratio * poly`` for a few fixed weights ``w`` (``ratio``: the spread of the GNN's
scores over PolyFilter's on the first block of users), then PolyFilter alone; train items
masked, Recall@20 / NDCG@20 against the carved pairs. A fixed weight is the form a server
could compute exactly from a user's history (both parts are linear in it), which is why
per-user normalisations are not tried. Prints JSON lines.

    python benchmarks/gowalla_blend_probe.py --threads 2 --config benchmarks/configs/gowalla.toml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from gowalla import DEFAULT_DIR, load_gowalla

from recsys.config import load_config
from recsys.evaluation.baselines import PolyFilter
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
K = 20


def recall_ndcg(
    scores: np.ndarray, train_rows: sp.csr_matrix, val_rows: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user Recall@20 and NDCG@20 of ``scores`` ``[B, I]``, train items masked."""
    s = scores.copy()
    s[train_rows.nonzero()] = -np.inf
    top = np.argpartition(-s, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1)
    top = np.take_along_axis(top, order, 1)
    disc = 1.0 / np.log2(np.arange(2, K + 2))
    rec, ndcg = np.zeros(len(s)), np.zeros(len(s))
    for r in range(len(s)):
        items = val_rows.indices[val_rows.indptr[r] : val_rows.indptr[r + 1]]
        hit = np.isin(top[r], items)
        rec[r] = hit.sum() / len(items)
        ndcg[r] = (hit * disc).sum() / disc[: min(len(items), K)].sum()
    return rec, ndcg


def validation_carve(
    data: InteractionData, cfg: TrainConfig, n_users: int
) -> tuple[InteractionData, sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """The carve ``train()`` makes (``val_fraction``, ``seed``): its train pairs, those pairs
    and the validation pairs as binary ``[U, I]`` matrices, and ``n_users`` validation users
    (a seeded sample, sorted)."""
    carve = split_validation(data, cfg.val_fraction, cfg.seed)
    tr = carve.train
    shape = (data.n_users, data.n_items)
    ones = np.ones(len(tr.train_user), np.float32)
    train_csr = sp.csr_matrix((ones, (tr.train_user, tr.train_item)), shape=shape)
    train_csr.data[:] = 1.0
    val_ones = np.ones(len(carve.val_user), np.float32)
    val_csr = sp.csr_matrix((val_ones, (carve.val_user, carve.val_item)), shape=shape)
    users = np.flatnonzero(np.diff(val_csr.indptr) > 0)
    rng = np.random.default_rng(0)
    users = np.sort(rng.choice(users, size=min(n_users, len(users)), replace=False))
    return tr, train_csr, val_csr, users


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder with train/test.txt.gz")
    ap.add_argument("--config", type=Path, default=None, help="TrainConfig file (the recipe)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--users", type=int, default=10_000, help="validation users scored")
    ap.add_argument(
        "--save", type=Path, default=None, help="folder for the GNN's user_emb.npy / item_emb.npy"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.users < 1:
        raise SystemExit("--users: at least 1")
    _, data = load_gowalla(args.data)
    cfg = load_config(args.config, TrainConfig) if args.config else TrainConfig()
    # the probe blends the GNN alone with the filter itself: no item-item term inside training
    cfg = cfg.model_copy(
        update={"fold_validation_epochs": 0, "progress": False, "item_item_keep": 0}
    )
    t0 = time.perf_counter()
    result = train(data, cfg)
    print(
        json.dumps(
            {
                "event": "gnn",
                "train_s": round(time.perf_counter() - t0),
                "best_epoch": result.best_epoch,
                "val_recall@20": round(result.best_val.get("recall@20", float("nan")), 5),
            }
        ),
        flush=True,
    )
    tr, train_csr, val_csr, users = validation_carve(data, cfg, args.users)
    with torch.no_grad():
        ue, ie = result.model.eval()(adjacency_for(tr, cfg))
    user_emb, item_emb = ue.numpy(), ie.numpy()
    if args.save is not None:  # for gowalla_sparse_filter.py --gnn
        args.save.mkdir(parents=True, exist_ok=True)
        np.save(args.save / "user_emb.npy", user_emb)
        np.save(args.save / "item_emb.npy", item_emb)
    t0 = time.perf_counter()
    poly = PolyFilter()
    poly.fit(train_csr)
    print(json.dumps({"event": "poly_fit", "fit_s": round(time.perf_counter() - t0)}), flush=True)
    names = [*(str(w) for w in WEIGHTS), "poly"]
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in names}
    ratio: float | None = None
    for s in range(0, len(users), 1000):
        rows = users[s : s + 1000]
        gnn = user_emb[rows] @ item_emb.T
        pf = poly.score(rows).astype(np.float32)
        if ratio is None:
            ratio = float(gnn.std() / pf.std())
        for w in WEIGHTS:
            parts[str(w)].append(
                recall_ndcg(gnn + (w * ratio) * pf, train_csr[rows], val_csr[rows])
            )
        parts["poly"].append(recall_ndcg(pf, train_csr[rows], val_csr[rows]))
    summary = {
        n: [round(float(np.concatenate([p[i] for p in ps]).mean()), 5) for i in (0, 1)]
        for n, ps in parts.items()
    }
    print(
        json.dumps(
            {"event": "blend", "users": len(users), "ratio": ratio, "val_recall_ndcg": summary}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
