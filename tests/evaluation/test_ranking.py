"""Full ranking: masking, deterministic ties, padding, batching, and the scorer path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.evaluation.ranking import (
    ScoreBatch,
    evaluate_scorer,
    evaluate_topk,
    interactions_csr,
    topk_full_ranking,
)


def _scorer(scores: np.ndarray) -> ScoreBatch:
    def score_batch(users: np.ndarray) -> np.ndarray:
        out: np.ndarray = scores[users].copy()
        return out

    return score_batch


def _reference_topk(
    scores: np.ndarray, train: sp.csr_matrix, users: np.ndarray, k: int
) -> np.ndarray:
    """Sort by (score desc, item asc) after dropping train items; pad with -1."""
    out = np.full((users.size, k), -1, dtype=np.int64)
    for r, u in enumerate(users):
        seen = set(train[u].indices.tolist())
        cand = [i for i in range(scores.shape[1]) if i not in seen]
        cand.sort(key=lambda i: (-scores[u, i], i))
        out[r, : min(k, len(cand))] = cand[:k]
    return out


def test_ties_go_to_lower_index_and_train_items_are_masked() -> None:
    scores = np.array([[1, 3, 3, 0, 3]], dtype=np.float32)
    empty = sp.csr_matrix((1, 5), dtype=np.float32)
    assert topk_full_ranking(_scorer(scores), np.array([0]), empty, 2).tolist() == [[1, 2]]
    train = interactions_csr(np.array([0]), np.array([1]), 1, 5)
    assert topk_full_ranking(_scorer(scores), np.array([0]), train, 3).tolist() == [[2, 4, 0]]


def test_fewer_candidates_than_k_pads_with_minus_one() -> None:
    scores = np.array([[5, 4, 3, 2]], dtype=np.float32)
    train = interactions_csr(np.array([0, 0, 0]), np.array([0, 1, 3]), 1, 4)
    assert topk_full_ranking(_scorer(scores), np.array([0]), train, 3).tolist() == [[2, -1, -1]]


@pytest.mark.parametrize(
    ("n_items", "levels", "k"), [(50, 4, 7), (3000, 6, 20), (3000, 10_000, 20)]
)
def test_matches_brute_force_with_heavy_ties(n_items: int, levels: int, k: int) -> None:
    # 3000 items exercise the group-maxima bound path (3000 // 64 > k), 50 items the small path
    rng = np.random.default_rng(n_items + levels)
    n_users = 37
    scores = rng.integers(0, levels, (n_users, n_items)).astype(np.float32)
    u = rng.integers(0, n_users, 400)
    i = rng.integers(0, n_items, 400)
    train = interactions_csr(u, i, n_users, n_items)
    users = rng.permutation(n_users)[:30]
    got = topk_full_ranking(_scorer(scores), users, train, k, batch_size=8)
    want = _reference_topk(scores, train, users, k)
    np.testing.assert_array_equal(got, want)
    # a train item is never recommended
    for row, user in zip(got, users, strict=True):
        assert not set(row.tolist()) & set(train[user].indices.tolist())


def test_masked_all_but_few_in_large_catalogue() -> None:
    n_items = 2000
    scores = np.ones((1, n_items), dtype=np.float32)
    keep = [7, 1500]
    items = np.array([i for i in range(n_items) if i not in keep])
    train = interactions_csr(np.zeros(items.size, dtype=np.int64), items, 1, n_items)
    got = topk_full_ranking(_scorer(scores), np.array([0]), train, 5)
    assert got.tolist() == [[7, 1500, -1, -1, -1]]


def test_batch_size_does_not_change_results() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((25, 200)).astype(np.float32)
    train = interactions_csr(rng.integers(0, 25, 100), rng.integers(0, 200, 100), 25, 200)
    users = np.arange(25)
    a = topk_full_ranking(_scorer(scores), users, train, 10, batch_size=1)
    b = topk_full_ranking(_scorer(scores), users, train, 10, batch_size=7)
    c = topk_full_ranking(_scorer(scores), users, train, 10, batch_size=1024)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_caller_scores_not_modified_when_shared() -> None:
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    before = scores.copy()
    train = interactions_csr(np.array([0, 1]), np.array([5, 4]), 2, 6)
    topk_full_ranking(lambda users: scores[users], np.array([0, 1]), train, 2)  # a view
    topk_full_ranking(lambda users: scores, np.array([0, 1]), train, 2)  # the array itself
    # the second scorer hands over an array it keeps: documented as taken over, so only
    # the view case is guaranteed; the first call must have left scores intact
    assert before[:, :4].tolist() == scores[:, :4].tolist()


def test_bad_scores_are_refused() -> None:
    train = sp.csr_matrix((2, 4), dtype=np.float32)
    users = np.array([0, 1])
    with pytest.raises(InputError, match="shape"):
        topk_full_ranking(lambda u: np.zeros((2, 3), np.float32), users, train, 2)
    with pytest.raises(InputError, match="NaN"):
        topk_full_ranking(lambda u: np.full((2, 4), np.nan, np.float32), users, train, 2)
    nan_late = np.zeros((2, 5000), np.float32)
    nan_late[1, 4999] = np.nan
    with pytest.raises(InputError, match="NaN"):
        topk_full_ranking(lambda u: nan_late.copy(), users, sp.csr_matrix((2, 5000)), 2)
    with pytest.raises(InputError, match="floats"):
        topk_full_ranking(lambda u: np.zeros((2, 4), np.int64), users, train, 2)
    with pytest.raises(InputError, match="user ids"):
        topk_full_ranking(lambda u: np.zeros((1, 4), np.float32), np.array([9]), train, 2)


def test_evaluate_scorer_skips_users_without_test_items() -> None:
    # 3 users, 6 items; user 2 has no test item and a scorer that would score it perfectly
    train = interactions_csr(np.array([0, 1, 2]), np.array([0, 1, 2]), 3, 6)
    test = interactions_csr(np.array([0, 1]), np.array([3, 4]), 3, 6)
    scores = np.zeros((3, 6), dtype=np.float32)
    scores[0, 3] = 1.0  # user 0: test item first
    scores[1, 5] = 1.0  # user 1: item 5 first, its test item 4 second
    scores[1, 4] = 0.5
    scores[2, 1] = 1.0
    m = evaluate_scorer(_scorer(scores), train, test, ks=(1, 3), batch_size=2)
    assert m["recall@1"] == pytest.approx(0.5)  # over users 0 and 1 only
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    # coverage over the two evaluated lists at K=1: items {3, 5}
    assert m["coverage@1"] == pytest.approx(2 / 6)


def test_interactions_csr_binary_and_weighted() -> None:
    u = np.array([0, 0, 1])
    i = np.array([2, 2, 0])
    assert interactions_csr(u, i, 2, 3).toarray().tolist() == [[0, 0, 1], [1, 0, 0]]
    w = interactions_csr(u, i, 2, 3, weight=np.array([0.5, 1.0, 2.0]))
    assert w.toarray().tolist() == [[0, 0, 1.5], [2, 0, 0]]
    with pytest.raises(InputError, match="item ids"):
        interactions_csr(np.array([0]), np.array([3]), 2, 3)
    with pytest.raises(InputError, match="integer"):
        interactions_csr(np.array([0.0]), np.array([1]), 2, 3)


def test_evaluate_topk_needs_cutoffs() -> None:
    test = interactions_csr(np.array([0]), np.array([0]), 1, 2)
    with pytest.raises(InputError):
        evaluate_topk(np.array([[0]]), np.array([0]), test, ks=())
