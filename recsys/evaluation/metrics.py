"""Top-K ranking metrics as pure functions over a hit matrix.

Every metric takes ``hits`` (bool ``[U, L]``: ``hits[u, r]`` is True when the
item ranked ``r + 1`` for user ``u`` is one of that user's test items) and, where
it needs it, ``n_relevant`` (int ``[U]``: the size of each user's test set).
Users with ``n_relevant == 0`` are skipped, as the LightGCN reference averages
over users with at least one test item only.

Definitions (those of the LightGCN reference, gusye1234/LightGCN-PyTorch,
``utils.RecallPrecision_ATk`` and ``utils.NDCGatK_r``):

- Recall@K    = hits in top K / |test|            (not min(|test|, K))
- Precision@K = hits in top K / K
- NDCG@K      = DCG / IDCG, binary relevance, DCG = sum over hits of
  1 / log2(rank + 1) with rank from 1, IDCG over the first min(|test|, K) ranks
- HitRate@K   = share of users with at least one hit in the top K
- MAP@K       = mean over users of AP@K = (sum over hit ranks r <= K of
  Precision@r) / min(|test|, K). The reference has no MAP; this is the common
  truncated definition (Kaggle ``apk``, microsoft/recommenders ``map_at_k``),
  which normalises by min(|test|, K) so a perfect list scores 1.
- Coverage@K  = distinct items over all top-K lists / catalogue size.

Each averaged metric has a ``*_rows`` twin giving its per-user terms (the model gate
compares two models user by user: :mod:`recsys.evaluation.stats`).

No torch here: numpy only, so the evaluator runs in any process.
"""

from __future__ import annotations

import numpy as np

from recsys.errors import InputError

__all__ = [
    "ROWS",
    "catalogue_coverage",
    "hit_rate_at_k",
    "hit_rate_rows",
    "map_at_k",
    "map_rows",
    "ndcg_at_k",
    "ndcg_rows",
    "precision_at_k",
    "precision_rows",
    "recall_at_k",
    "recall_rows",
]


def _check_k(hits: np.ndarray, k: int) -> None:
    if hits.ndim != 2:
        raise InputError(f"hits must be a 2-d [users, ranks] array, got shape {hits.shape}")
    if hits.dtype != np.bool_:
        raise InputError(f"hits must be boolean, got {hits.dtype}")
    if not 1 <= k <= hits.shape[1]:
        raise InputError(f"k={k} must be in 1..{hits.shape[1]} (the length of the ranked lists)")


def _check_relevant(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """The mask of users that count; errors on inconsistent inputs."""
    if n_relevant.shape != (hits.shape[0],):
        raise InputError(
            f"n_relevant must have one entry per user ({hits.shape[0]}), "
            f"got shape {n_relevant.shape}"
        )
    if (n_relevant < 0).any():
        raise InputError("n_relevant must be non-negative")
    # a list can't hit more distinct test items than the user has
    if (hits.sum(axis=1) > n_relevant).any():
        raise InputError("a user has more hits than test items: hits and n_relevant disagree")
    counted: np.ndarray = n_relevant > 0
    if not counted.any():
        raise InputError("no user has a test item: metrics are undefined")
    return counted


def recall_rows(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """hits@K / |test| of each user with test items (the terms Recall@K averages)."""
    _check_k(hits, k)
    counted = _check_relevant(hits, n_relevant)
    out: np.ndarray = hits[counted, :k].sum(axis=1) / n_relevant[counted]
    return out


def precision_rows(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """hits@K / K of each user with test items."""
    _check_k(hits, k)
    counted = _check_relevant(hits, n_relevant)
    out: np.ndarray = hits[counted, :k].sum(axis=1) / np.float64(k)
    return out


def hit_rate_rows(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1.0 for each user with test items and a hit in the top K, else 0.0."""
    _check_k(hits, k)
    counted = _check_relevant(hits, n_relevant)
    out: np.ndarray = np.asarray(hits[counted, :k].any(axis=1), dtype=np.float64)
    return out


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_rows(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K of each user with test items (binary relevance, IDCG over min(|test|, K))."""
    _check_k(hits, k)
    counted = _check_relevant(hits, n_relevant)
    disc = _discounts(k)
    dcg = hits[counted, :k] @ disc
    # IDCG: the first min(|test|, K) discounts, read off a cumulative sum
    ideal_len = np.minimum(n_relevant[counted], k)
    idcg = np.cumsum(disc)[ideal_len - 1]
    out: np.ndarray = dcg / idcg
    return out


def map_rows(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@K of each user with test items."""
    _check_k(hits, k)
    counted = _check_relevant(hits, n_relevant)
    h = hits[counted, :k]
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    out: np.ndarray = (prec_at_r * h).sum(axis=1) / np.minimum(n_relevant[counted], k)
    return out


ROWS = {
    "recall": recall_rows,
    "ndcg": ndcg_rows,
    "precision": precision_rows,
    "hit_rate": hit_rate_rows,
    "map": map_rows,
}
"""Per-user terms of each averaged metric, by name (``ndcg@20`` is ``ndcg_rows(.., 20)``)."""


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean over users with test items of hits@K / |test|."""
    return float(np.mean(recall_rows(hits, n_relevant, k)))


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean over users with test items of hits@K / K."""
    return float(np.mean(precision_rows(hits, n_relevant, k)))


def hit_rate_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Share of users with test items that have at least one hit in the top K."""
    return float(np.mean(hit_rate_rows(hits, n_relevant, k)))


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean NDCG@K with binary relevance and IDCG over min(|test|, K) ranks."""
    return float(np.mean(ndcg_rows(hits, n_relevant, k)))


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean AP@K = sum over hit ranks r <= K of Precision@r, / min(|test|, K)."""
    return float(np.mean(map_rows(hits, n_relevant, k)))


def catalogue_coverage(topk: np.ndarray, n_items: int, k: int) -> float:
    """Distinct items in the first K entries of all lists / n_items (-1 = padding)."""
    if topk.ndim != 2:
        raise InputError(f"topk must be a 2-d [users, K] array, got shape {topk.shape}")
    if not 1 <= k <= topk.shape[1]:
        raise InputError(f"k={k} must be in 1..{topk.shape[1]}")
    if n_items < 1:
        raise InputError(f"n_items must be >= 1, got {n_items}")
    items = topk[:, :k].ravel()
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise InputError(f"item index {int(items.max())} out of range for n_items={n_items}")
    # bincount is faster than np.unique for dense integer ids
    seen = np.bincount(items, minlength=n_items) > 0
    return float(seen.sum() / n_items)
