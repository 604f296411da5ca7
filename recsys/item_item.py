"""A sparse item-item score term that the serving fold-in adds exactly.

A linear graph filter (:class:`recsys.evaluation.baselines.PolyFilter`) scores a
history ``r_u`` (``[I]``, edge weights) as ``r_u F`` with ``F`` an item-item
operator ``[I, I]``. Kept to its ``M`` largest entries per row (``index``,
``value``: ``[I, M]``), the term a model adds to its scores is::

    t_uj = sum_i w_ui * sum_m value[i, m] * [index[i, m] == j]

It needs nothing but the user's history, so a new interaction moves it at once
(the ONNX scorer gathers the ``M`` entries of each history slot and adds them
into the scores before the mask and the top-K: :mod:`recsys.scorer`). The
weight of the term is folded into ``value`` when training chooses it
(:mod:`recsys.training.item_item`); padding entries have value 0.

numpy / scipy only: training, the export gate, the production scorer and the
bundle all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError

INDEX_FILE = "item_item_index.npy"
VALUE_FILE = "item_item_value.npy"


@dataclass(frozen=True)
class ItemItemTerm:
    """``index`` int32 ``[I, M]`` (item ids ``0..I-1``) and ``value`` float32 ``[I, M]``,
    read-only (the scorer, the bundle and the reference scores all read the same arrays)."""

    index: np.ndarray
    value: np.ndarray

    def __post_init__(self) -> None:
        if self.index.ndim != 2 or self.index.shape != self.value.shape:
            raise InputError(
                f"item-item term: index {self.index.shape} and value {self.value.shape} must be "
                "two arrays of one [items, width] shape"
            )
        n = self.index.shape[0]
        if self.index.size and (int(self.index.min()) < 0 or int(self.index.max()) >= n):
            raise InputError(f"item-item term: an index lies outside 0..{n - 1}")
        if not np.isfinite(self.value).all():
            raise InputError("item-item term: a value is not finite")
        for name in ("index", "value"):
            frozen = np.array(getattr(self, name), copy=True)
            frozen.flags.writeable = False
            object.__setattr__(self, name, frozen)

    @property
    def n_items(self) -> int:
        return int(self.index.shape[0])

    @property
    def width(self) -> int:
        return int(self.index.shape[1])

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """The operator as a CSR ``[I, I]`` (float32; entries of one row summed), built once."""
        n, m = self.index.shape
        # copies: sum_duplicates sorts the entries in place, and a view would reorder ``value``
        out = sp.csr_matrix(
            (
                self.value.astype(np.float32, copy=True).ravel(),
                self.index.astype(np.int64, copy=True).ravel(),
                np.arange(0, n * m + 1, m),
            ),
            shape=(n, n),
        )
        out.sum_duplicates()
        return out

    def scores(self, history: sp.csr_matrix) -> np.ndarray:
        """The term for each history row ``[B, I]`` (edge weights): dense float32 ``[B, I]``."""
        if history.shape[1] != self.n_items:
            raise InputError(
                f"item-item term: histories have {history.shape[1]} items, the term {self.n_items}"
            )
        out: np.ndarray = np.asarray(
            (sp.csr_matrix(history, dtype=np.float32) @ self.matrix).toarray(), dtype=np.float32
        )
        return out

    def scorer(self, history: sp.csr_matrix) -> Callable[[np.ndarray], np.ndarray]:
        """``users -> scores(history[users])``: the term of the users of ``history``."""
        matrix = self.matrix

        def score(users: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.asarray((history[users] @ matrix).toarray(), dtype=np.float32)
            return out

        return score

    def scaled(self, factor: float) -> ItemItemTerm:
        return ItemItemTerm(self.index, (self.value * np.float32(factor)).astype(np.float32))


def top_entries(rows: np.ndarray, first_row: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` largest entries of each row of a dense block ``[b, I]`` whose row ``r`` is
    item ``first_row + r``, the diagonal left out (an item in a history is never recommended
    back to it): ``(index int32 [b, keep], value float32 [b, keep])``, largest first."""
    b, n = rows.shape
    keep = min(keep, n - 1)
    if keep < 1:
        raise InputError(f"item-item term: needs at least 2 items and keep >= 1, got {n}, {keep}")
    block = np.array(rows, dtype=np.float32, copy=True)
    block[np.arange(b), first_row + np.arange(b)] = -np.inf
    idx = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
    vals = np.take_along_axis(block, idx, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    vals[~np.isfinite(vals)] = 0.0
    return idx.astype(np.int32), vals.astype(np.float32)


def history_csr(
    user: np.ndarray, item: np.ndarray, weight: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """Users x items with summed edge weights: the histories the fold-in (and the term) read."""
    out = sp.csr_matrix(
        (
            np.asarray(weight, dtype=np.float32),
            (np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64)),
        ),
        shape=(n_users, n_items),
        dtype=np.float32,
    )
    out.sum_duplicates()
    return out
