"""Random but self-consistent fold-in tables, for serving tests and load benchmarks.

No model is involved: the tables satisfy the fold-in by construction, which is
all the server relies on. Latency depends only on the table sizes, so a
Gowalla-sized bundle (about 30k users, 41k items, 64 dims) made here measures
the server honestly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.bundle import TYPE_BITS, FoldInTables
from recsys.item_item import ItemItemTerm


def synthetic_tables(
    n_users: int = 50,
    n_items: int = 40,
    dim: int = 8,
    num_layers: int = 2,
    edges_per_user: int = 5,
    n_categories: int = 4,
    segments: tuple[str, ...] = ("DE", "FR"),
    with_features: bool = True,
    seed: int = 0,
    scale: float = 1.0,
    item_item_width: int = 0,
) -> FoldInTables:
    """Random tables; ``item_item_width`` > 0 adds a random item-item term of that many entries
    per item (drawn after the rest, so the other tables do not depend on it)."""
    rng = np.random.default_rng(seed)
    feature_width = 2 + len(segments) + 2 if with_features else 0
    # items skewed towards low indices so popularity is not flat; duplicate pairs dropped
    hist_user = np.repeat(np.arange(n_users, dtype=np.int64), edges_per_user)
    hist_item = rng.choice(n_items, size=len(hist_user), p=_zipf(n_items)).astype(np.int64)
    _, first = np.unique(hist_user * n_items + hist_item, return_index=True)
    hist_user, hist_item = hist_user[first], hist_item[first]
    hist_weight = (np.log1p(rng.integers(1, 9, size=len(hist_item)))).astype(np.float32)
    type_names = list(TYPE_BITS)
    hist_types = np.array(
        [TYPE_BITS[type_names[j]] for j in rng.integers(0, 4, size=len(hist_item))], dtype=np.int16
    )
    deg = np.bincount(hist_item, weights=hist_weight, minlength=n_items).astype(np.float32)
    items = pd.DataFrame(
        {
            "item_idx": np.arange(n_items, dtype=np.int64),
            "item_id": [f"i{j}" for j in range(n_items)],
            "category": [f"c{j % n_categories}" for j in range(n_items)],
            "price": np.round(rng.uniform(1, 100, size=n_items), 2),
        }
    )
    return FoldInTables(
        user_ids=np.array([f"u{j}" for j in range(n_users)], dtype=object),
        item_ids=items["item_id"].to_numpy(dtype=object),
        user_e0=(scale * rng.normal(size=(n_users, dim))).astype(np.float32),
        item_S=(scale * rng.normal(size=(n_items, dim))).astype(np.float32),
        item_final=(scale * rng.normal(size=(n_items, dim))).astype(np.float32),
        item_deg=deg,
        num_layers=num_layers,
        hist_user=hist_user.astype(np.int64),
        hist_item=hist_item.astype(np.int64),
        hist_weight=hist_weight,
        hist_types=hist_types,
        items=items,
        user_segments=np.array([segments[j % len(segments)] for j in range(n_users)], dtype=object)
        if segments
        else None,
        proj_weight=(rng.normal(size=(feature_width, dim)) * 0.5).astype(np.float32)
        if feature_width
        else None,
        proj_bias=np.zeros(dim, dtype=np.float32) if feature_width else None,
        feature_spec_json=_feature_spec(segments) if feature_width else None,
        item_item=_item_item(n_items, item_item_width, seed) if item_item_width else None,
    )


def _item_item(n_items: int, width: int, seed: int) -> ItemItemTerm:
    """Random entries of a magnitude that moves rankings without swamping the embeddings."""
    rng = np.random.default_rng([seed, 1])
    width = min(width, n_items - 1)
    return ItemItemTerm(
        rng.integers(0, n_items, (n_items, width)).astype(np.int32),
        rng.exponential(0.05, (n_items, width)).astype(np.float32),
    )


def _feature_spec(segments: tuple[str, ...]) -> str:
    """Users: age (numeric) and country (the segment), width ``2 + len(segments) + 2``."""
    from recsys.graph.features import CategoricalFeature, FeatureSpec, NumericFeature, TableSpec

    spec = FeatureSpec(
        users=TableSpec(
            numeric=[NumericFeature(name="age", mean=35.0, std=10.0)],
            categorical=[CategoricalFeature(name="country", vocab=sorted(segments))],
        ),
        items=TableSpec(numeric=[], categorical=[]),
    )
    return spec.to_json()


def _zipf(n: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** 0.8
    out: np.ndarray = p / p.sum()
    return out
