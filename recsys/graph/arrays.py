"""Sort- and bincount-based group operations over integer columns (numpy's hash-based
``unique`` is slower on the build's sizes).
"""

from __future__ import annotations

import numpy as np


def unique_int(x: np.ndarray) -> np.ndarray:
    """Sorted unique values of an integer array (sort-based: numpy's hash unique is slower)."""
    s = np.sort(x)
    if len(s) == 0:
        return s
    out: np.ndarray = s[np.concatenate(([True], s[1:] != s[:-1]))]
    return out


def present(codes: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct values of ``codes`` in ``[0, size)``, in O(n) with a bincount."""
    return np.flatnonzero(np.bincount(codes, minlength=size))


def per_group_max(values: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` per group: ``order`` sorts the rows by group, ``starts`` are the
    groups' first positions in that order (what :func:`~recsys.graph.weights.aggregate_pairs`
    returns)."""
    if len(starts) == 0:
        return np.zeros(0, values.dtype)
    out: np.ndarray = np.maximum.reduceat(values[order], starts)
    return out
