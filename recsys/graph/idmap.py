"""Stable id maps: string ids -> dense indices that never change across snapshots.

A snapshot's map is the previous snapshot's map followed by the ids it has
not seen yet, sorted, so embeddings and serving tables keep lining up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.errors import InputError


def extend_ids(previous: np.ndarray | None, seen: np.ndarray) -> np.ndarray:
    """``previous`` followed by the ids of ``seen`` that are not in it, sorted and unique."""
    # pandas' hash-based unique, then a sort: faster than np.unique on object arrays
    seen_u = np.sort(
        pd.unique(pd.Series(np.asarray(seen, dtype=object)).astype(str).to_numpy(dtype=object))
    )
    if previous is None or len(previous) == 0:
        return seen_u.astype(object)
    prev = np.asarray(previous, dtype=object)
    new = seen_u[index_of(prev, seen_u) < 0]
    return np.concatenate([prev, new.astype(object)])


def index_of(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each of ``values`` in the map ``ids`` (int64), -1 where absent."""
    idx = pd.Index(np.asarray(ids, dtype=object))
    if not idx.is_unique:
        dup = idx[idx.duplicated()][0]
        raise InputError(f"id map: duplicate id {dup!r}")
    out: np.ndarray = idx.get_indexer(np.asarray(values, dtype=object)).astype(np.int64)
    return out


def check_prefix(previous: np.ndarray, current: np.ndarray, what: str) -> None:
    """Fail if ``current`` does not start with ``previous`` (indices would shift)."""
    if len(current) < len(previous) or not np.array_equal(
        np.asarray(current[: len(previous)], dtype=object), np.asarray(previous, dtype=object)
    ):
        raise InputError(f"{what} id map: does not extend the previous snapshot's map")
