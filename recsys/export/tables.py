"""Fold-in tables from a trained FeatureLightGCN and its graph snapshot (uses torch).

From the layers ``e^(0..K)`` over the sym-normalised adjacency of the
snapshot's train edges:

- ``user_e0`` = layer 0 of every user (id embedding + feature projection);
- ``item_S`` = ``sum_{k<K} e_i^(k)``, ``item_final`` = mean of the item layers;
- ``item_deg`` = weighted item degrees ``d_i`` (fixed until the next retrain);
- the user feature projection ``x -> W x + b`` for new users (probed, so any
  affine projection exports; a non-affine one is refused).

The reference embeddings (``forward``) come back too: the export gate checks
that the fold-in reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys.bundle import UNKNOWN_TYPE_BIT, FoldInTables
from recsys.errors import InputError
from recsys.item_item import ItemItemTerm
from recsys.logs import get_logger

log = get_logger(__name__)


@dataclass
class Reference:
    """What torch says: final user and item embeddings of the trained model."""

    users: np.ndarray
    items: np.ndarray


def aggregate_edges(
    user: np.ndarray, item: np.ndarray, weight: np.ndarray, types: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique (user, item) pairs with summed weights (as the adjacency sums duplicates)."""
    df = pd.DataFrame(
        {
            "u": np.asarray(user, dtype=np.int64),
            "i": np.asarray(item, dtype=np.int64),
            "w": np.asarray(weight, dtype=np.float64),
        }
    )
    bits = list(range(UNKNOWN_TYPE_BIT.bit_length()))
    if types is not None:
        t = np.asarray(types, dtype=np.int64)
        for b in bits:
            df[f"b{b}"] = (t >> b) & 1
    g = df.groupby(["u", "i"], sort=True)
    agg = g["w"].sum()
    idx = agg.index.to_frame(index=False)
    if types is None:
        out_t = np.full(len(agg), UNKNOWN_TYPE_BIT, dtype=np.int16)
    else:
        # OR of the type bits of duplicate pairs, bit by bit (max of 0/1 columns)
        m = g[[f"b{b}" for b in bits]].max().to_numpy(np.int64)
        out_t = (m << np.array(bits, dtype=np.int64)).sum(axis=1).astype(np.int16)
    return (
        idx["u"].to_numpy(np.int64).copy(),
        idx["i"].to_numpy(np.int64).copy(),
        agg.to_numpy(np.float32).copy(),
        out_t,
    )


def affine_projection(model: Any, n_features: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """``(W [F, d], b [d])`` with ``project_user_features(x) == x @ W + b``, probed and checked."""
    with torch.no_grad():
        b = model.project_user_features(torch.zeros(1, n_features))[0]
        eye = torch.eye(n_features)
        w = model.project_user_features(eye) - b
        x = torch.randn(8, n_features, generator=torch.Generator().manual_seed(0))
        err = float((model.project_user_features(x) - (x @ w + b)).abs().max())
    if err > 1e-4:
        raise InputError(
            f"the user feature projection is not affine (error {err:.2e}); it cannot be exported"
        )
    return w.numpy().astype(np.float32), b.numpy().astype(np.float32)


def _segments(snapshot: Any, segment_feature: str | None) -> np.ndarray | None:
    spec = snapshot.feature_spec
    if segment_feature is None or segment_feature not in [c.name for c in spec.users.categorical]:
        return None
    raw = spec.users.decode(np.asarray(snapshot.user_features))
    col = raw[segment_feature].astype(object)
    out: np.ndarray = np.array(["" if v is None else str(v) for v in col], dtype=object)
    return out


def _items_frame(snapshot: Any) -> pd.DataFrame:
    item_ids = np.asarray(snapshot.item_ids).astype(str)
    base = pd.DataFrame({"item_idx": np.arange(len(item_ids), dtype=np.int64), "item_id": item_ids})
    src = snapshot.items
    if src is None or len(src) == 0:
        base["category"] = None
        base["price"] = np.nan
        return base
    cols = [c for c in ("category", "price") if c in src.columns]
    extra = src[["item_idx", *cols]].drop_duplicates("item_idx")
    out = base.merge(extra, on="item_idx", how="left")
    for c in ("category", "price"):
        if c not in out:
            out[c] = None if c == "category" else np.nan
    out["category"] = out["category"].astype("string")
    out["price"] = out["price"].astype(np.float64)
    return out[["item_idx", "item_id", "category", "price"]]


def compute_tables(
    model: Any,
    snapshot: Any,
    edge_types: np.ndarray | None = None,
    segment_feature: str | None = "country",
    item_item: ItemItemTerm | None = None,
) -> tuple[FoldInTables, Reference]:
    """The fold-in tables and the torch reference embeddings for ``model`` on ``snapshot``
    (with the model's item-item term, when it has one, for the scorer)."""
    from recsys.models.adjacency import normalized_adjacency

    n_users, n_items = len(snapshot.user_ids), len(snapshot.item_ids)
    if model.num_users != n_users or model.num_items != n_items:
        raise InputError(
            f"model is for {model.num_users} users x {model.num_items} items, the graph "
            f"{snapshot.uri} has {n_users} x {n_items}"
        )
    if item_item is not None and item_item.n_items != n_items:
        raise InputError(
            f"the model's item-item term is for {item_item.n_items} items, the graph "
            f"{snapshot.uri} has {n_items}"
        )
    hu, hi, hw, ht = aggregate_edges(
        snapshot.train_user, snapshot.train_item, snapshot.train_weight, edge_types
    )
    adj = normalized_adjacency(hu, hi, hw, n_users, n_items, norm="sym")
    k = int(model.num_layers)
    model = model.to("cpu").eval()
    with torch.no_grad():
        layers = model.layers(adj)
        final = model.readout(layers)
        items_layers = [x[n_users:] for x in layers]
        s = torch.zeros_like(items_layers[0])
        for x in items_layers[:k]:
            s = s + x
        user_e0 = layers[0][:n_users].numpy().astype(np.float32)
        ref = Reference(
            users=final[:n_users].numpy().astype(np.float32),
            items=final[n_users:].numpy().astype(np.float32),
        )
        item_s = s.numpy().astype(np.float32)
    proj_w = proj_b = None
    spec_json = None
    n_feat = int(getattr(model, "user_feature_dim", 0) or 0)
    if n_feat and getattr(model, "user_proj", None) is not None:
        proj_w, proj_b = affine_projection(model, n_feat, int(model.embedding_dim))
        spec_json = snapshot.feature_spec.to_json()
    tables = FoldInTables(
        user_ids=np.asarray(snapshot.user_ids).astype(str).astype(object),
        item_ids=np.asarray(snapshot.item_ids).astype(str).astype(object),
        user_e0=user_e0,
        item_S=item_s,
        item_final=ref.items,
        item_deg=adj.deg_item.numpy().astype(np.float32),
        num_layers=k,
        hist_user=hu,
        hist_item=hi,
        hist_weight=hw,
        hist_types=ht,
        items=_items_frame(snapshot),
        user_segments=_segments(snapshot, segment_feature),
        proj_weight=proj_w,
        proj_bias=proj_b,
        feature_spec_json=spec_json,
        item_item=item_item,
    )
    log.info(
        "fold-in tables: %d users, %d items, %d edges, K=%d, d=%d, features=%s",
        n_users,
        n_items,
        len(hu),
        k,
        model.embedding_dim,
        proj_w is not None,
    )
    return tables, ref


def with_served_history(tables: FoldInTables, snapshot: Any) -> FoldInTables:
    """``tables`` with the snapshot's served history (train and holdout days) in place of the
    train edges, and the users first seen in the holdout days appended with a zero layer 0
    (the model has no row for them: their embedding is their history's fold-in alone).

    The export gate checks the fold-in on the train edges (where the trained embeddings
    are the reference); this is what the bundle then serves. Older snapshots without a
    served history keep the train edges."""
    history = getattr(snapshot, "history", None)
    if history is None:
        return tables
    extra = np.asarray(history.extra_user_ids).astype(str).astype(object)
    d = tables.user_e0.shape[1]
    segments = tables.user_segments
    if segments is not None:
        segments = np.concatenate([segments, np.full(len(extra), "", dtype=object)])
    return replace(
        tables,
        user_ids=np.concatenate([tables.user_ids, extra]),
        user_e0=np.concatenate([tables.user_e0, np.zeros((len(extra), d), np.float32)]),
        hist_user=np.asarray(history.user, dtype=np.int64),
        hist_item=np.asarray(history.item, dtype=np.int64),
        hist_weight=np.asarray(history.weight, dtype=np.float32),
        hist_types=np.asarray(history.types, dtype=np.int16),
        user_segments=segments,
    )
