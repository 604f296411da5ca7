"""Full ranking over all items, and the evaluator built on it.

The protocol is the LightGCN reference's: every item is a candidate, the
user's train items are masked out, metrics are averaged over users with at
least one test item (see :mod:`recsys.evaluation.metrics` for definitions).

Speed: scores come in batches of users; the top K of each batch is found with
``np.argpartition`` (linear time) and only those K are sorted, so all 29,858
Gowalla users over 40,981 items take seconds on top of the scoring itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.evaluation.metrics import ROWS, catalogue_coverage

ScoreBatch = Callable[[np.ndarray], np.ndarray]
"""``score_batch(users)`` -> float ``[len(users), n_items]`` scores, higher is better."""

__all__ = [
    "ScoreBatch",
    "evaluate_scorer",
    "evaluate_topk",
    "hit_matrix",
    "interactions_csr",
    "topk_full_ranking",
    "topk_rows",
]


def interactions_csr(
    user: np.ndarray,
    item: np.ndarray,
    n_users: int,
    n_items: int,
    weight: np.ndarray | None = None,
) -> sp.csr_matrix:
    """User x item CSR matrix (float32) from interaction rows.

    Without ``weight`` the matrix is binary (repeated pairs count once); with
    it, the weights of repeated pairs are summed. Column indices are sorted.
    """
    user = np.asarray(user)
    item = np.asarray(item)
    if user.shape != item.shape or user.ndim != 1:
        raise InputError(f"user and item must be 1-d, equal length: {user.shape}, {item.shape}")
    if not (np.issubdtype(user.dtype, np.integer) and np.issubdtype(item.dtype, np.integer)):
        raise InputError(f"user and item must be integer ids, got {user.dtype}, {item.dtype}")
    if user.size:
        if user.min() < 0 or user.max() >= n_users:
            raise InputError(f"user ids out of 0..{n_users - 1}: {user.min()}..{user.max()}")
        if item.min() < 0 or item.max() >= n_items:
            raise InputError(f"item ids out of 0..{n_items - 1}: {item.min()}..{item.max()}")
    if weight is None:
        data = np.ones(user.size, dtype=np.float32)
    else:
        data = np.asarray(weight, dtype=np.float32)
        if data.shape != user.shape:
            raise InputError(f"weight must have one entry per interaction, got {data.shape}")
        if not np.isfinite(data).all():
            raise InputError("weight must be finite")
    m = sp.csr_matrix((data, (user, item)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()  # also sorts the column indices
    if weight is None:
        m.data[:] = 1.0
    return m


def _check_users(users: np.ndarray, n_rows: int, what: str) -> np.ndarray:
    users = np.asarray(users)
    if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise InputError(f"users must be a 1-d integer array, got {users.dtype} {users.shape}")
    if users.size and (users.min() < 0 or users.max() >= n_rows):
        raise InputError(f"user ids must be in 0..{n_rows - 1} ({what} rows)")
    return users.astype(np.int64, copy=False)


_GROUP = 64


def _topk_rows(scores: np.ndarray, k: int, mask_buf: np.ndarray | None = None) -> np.ndarray:
    """Top-k column indices of each row, best first, ties to the lower index.

    ``scores`` may contain -inf (masked); such entries come back as -1. NaN
    raises. ``mask_buf`` is an optional bool scratch buffer of at least
    ``scores.size`` entries, reused across batches to save page faults.

    ``np.argpartition`` along rows is slow (tens of ns per element), so the
    selection goes in two passes instead: split each row into groups (column
    ``j`` goes to group ``j mod G``, so the group maxima are one strided
    ``max`` over a reshaped view), and the k-th largest group maximum is a
    lower bound on the row's k-th largest score (those k maxima are k distinct
    entries at or above it). One comparison drops everything below it; a few
    dozen candidates per row usually remain, and they are sorted exactly
    (score desc, index asc). Entries tied with the k-th score are all at or
    above the bound, so ties are broken exactly.
    """
    b, n = scores.shape
    kk = min(k, n)
    n_groups = n // _GROUP
    if n_groups > kk:
        maxima = scores[:, : n_groups * _GROUP].reshape(b, _GROUP, n_groups).max(axis=1)
        if np.isnan(maxima).any():  # max propagates NaN from any member
            raise InputError("score_batch returned NaN scores")
        bound = np.partition(maxima, n_groups - kk, axis=1)[:, n_groups - kk]
    else:  # a small catalogue: every entry is a candidate
        if np.isnan(scores).any():
            raise InputError("score_batch returned NaN scores")
        bound = np.full(b, -np.inf, dtype=scores.dtype)
    if n_groups * _GROUP < n and np.isnan(scores[:, n_groups * _GROUP :]).any():
        raise InputError("score_batch returned NaN scores")
    if mask_buf is None or mask_buf.size < scores.size:
        mask_buf = np.empty(scores.size, dtype=bool)
    mask = mask_buf[: scores.size].reshape(b, n)
    np.greater_equal(scores, bound[:, None], out=mask)
    flat = np.flatnonzero(mask)
    rows, cols = np.divmod(flat, n)
    vals = scores[rows, cols]
    # within each row: score descending, then item index ascending
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=b)
    rank = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    take = rank < kk
    top: np.ndarray = cols[take].reshape(b, kk).astype(np.int64)
    top[np.isneginf(vals[take].reshape(b, kk))] = -1
    if kk < k:
        top = np.concatenate([top, np.full((b, k - kk), -1, dtype=np.int64)], axis=1)
    return top


def topk_full_ranking(
    score_batch: ScoreBatch,
    users: np.ndarray,
    train_csr: sp.csr_matrix,
    k: int,
    batch_size: int = 1024,
) -> np.ndarray:
    """Top-``k`` items for each user over the whole catalogue, train items masked.

    Returns int64 ``[len(users), k]`` item indices, best first; ties go to the
    lower item index so results are deterministic. A user with fewer than ``k``
    unmasked items gets ``-1`` in the remaining slots: a train item is never
    recommended. ``score_batch`` may return an array the caller keeps no
    reference to; it is masked in place when it owns its (writeable) data.
    """
    if not sp.issparse(train_csr):
        raise InputError("train_csr must be a scipy sparse matrix")
    train_csr = sp.csr_matrix(train_csr)
    n_users, n_items = train_csr.shape
    users = _check_users(users, n_users, "train")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((users.size, k), dtype=np.int64)
    mask_buf = np.empty(min(batch_size, max(users.size, 1)) * n_items, dtype=bool)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_batch(batch))
        if scores.shape != (batch.size, n_items):
            raise InputError(
                f"score_batch returned shape {scores.shape}, expected {(batch.size, n_items)}"
            )
        if not np.issubdtype(scores.dtype, np.floating):
            raise InputError(f"score_batch must return floats, got {scores.dtype}")
        if not (scores.flags.writeable and scores.flags.owndata):
            scores = scores.copy()
        sub = train_csr[batch]
        rows = np.repeat(np.arange(batch.size), np.diff(sub.indptr))
        scores[rows, sub.indices] = -np.inf
        out[start : start + batch.size] = _topk_rows(scores, k, mask_buf)
    return out


def hit_matrix(
    topk: np.ndarray, users: np.ndarray, test_csr: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, n_relevant)``: bool ``[U, K]`` membership of each ranked item in the test set."""
    if not sp.issparse(test_csr):
        raise InputError("test_csr must be a scipy sparse matrix")
    test_csr = sp.csr_matrix(test_csr)
    n_rows, n_items = test_csr.shape
    users = _check_users(users, n_rows, "test")
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.shape[0] != users.size:
        raise InputError(f"topk must be [len(users)={users.size}, K], got shape {topk.shape}")
    if not np.issubdtype(topk.dtype, np.integer):
        raise InputError(f"topk must hold integer item ids, got {topk.dtype}")
    if topk.size and topk.max() >= n_items:
        raise InputError(f"topk holds item {int(topk.max())}, beyond n_items={n_items}")
    sub = test_csr[users]
    sub.sum_duplicates()
    n_relevant = np.diff(sub.indptr).astype(np.int64)
    # membership by one sorted search over keys user_row * n_items + item
    test_rows = np.repeat(np.arange(users.size, dtype=np.int64), n_relevant)
    test_keys = test_rows * n_items + sub.indices.astype(np.int64)  # sorted: csr rows, sorted cols
    keys = np.arange(users.size, dtype=np.int64)[:, None] * n_items + topk
    pos = np.searchsorted(test_keys, keys)
    pos = np.minimum(pos, max(test_keys.size - 1, 0))
    hits = (test_keys[pos] == keys) & (topk >= 0) if test_keys.size else np.zeros(topk.shape, bool)
    return hits, n_relevant


def topk_rows(
    topk: np.ndarray,
    users: np.ndarray,
    test_csr: sp.csr_matrix,
    ks: Sequence[int] = (20,),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-user terms of Recall, NDCG, Precision, HitRate and MAP at each K.

    Returns ``(counted, rows)``: the users of ``users`` with at least one test item, in
    their order, and for each metric name (``ndcg@20``) one float64 value per counted
    user; the metric is the mean of its row (:func:`evaluate_topk`).
    """
    if not ks:
        raise InputError("ks must name at least one cutoff")
    hits, n_relevant = hit_matrix(topk, users, test_csr)
    counted = np.asarray(users, dtype=np.int64)[n_relevant > 0]
    rows: dict[str, np.ndarray] = {}
    for k in ks:
        for name, fn in ROWS.items():
            rows[f"{name}@{k}"] = fn(hits, n_relevant, k)
    return counted, rows


def evaluate_topk(
    topk: np.ndarray,
    users: np.ndarray,
    test_csr: sp.csr_matrix,
    ks: Sequence[int] = (20,),
    n_items: int | None = None,
) -> dict[str, float]:
    """Recall, NDCG, Precision, HitRate, MAP and catalogue coverage at each K.

    Averages run over the users in ``users`` with at least one test item;
    coverage counts distinct items over all lists given (every row of ``topk``).
    """
    _, rows = topk_rows(topk, users, test_csr, ks)
    n_items = int(test_csr.shape[1]) if n_items is None else n_items
    out: dict[str, float] = {}
    for k in ks:
        for name in ROWS:
            out[f"{name}@{k}"] = float(np.mean(rows[f"{name}@{k}"]))
        out[f"coverage@{k}"] = catalogue_coverage(topk, n_items, k)
    return out


def evaluate_scorer(
    score_batch: ScoreBatch,
    train_csr: sp.csr_matrix,
    test_csr: sp.csr_matrix,
    ks: Sequence[int] = (20,),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Rank every user with test items over the full catalogue and score the lists."""
    if train_csr.shape != test_csr.shape:
        raise InputError(f"train {train_csr.shape} and test {test_csr.shape} shapes differ")
    if not ks or min(ks) < 1:
        raise InputError(f"ks must be positive cutoffs, got {list(ks)}")
    test = sp.csr_matrix(test_csr)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    if users.size == 0:
        raise InputError("no user has a test item: nothing to evaluate")
    topk = topk_full_ranking(score_batch, users, sp.csr_matrix(train_csr), max(ks), batch_size)
    return evaluate_topk(topk, users, test, ks, n_items=int(test.shape[1]))
