"""The metrics against hand-computed values and against a literal per-user reading
of the LightGCN reference definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.evaluation.metrics import (
    catalogue_coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recsys.evaluation.ranking import evaluate_topk, hit_matrix, interactions_csr

L3 = math.log2(3)


def _test_csr(rows: dict[int, list[int]], n_users: int, n_items: int) -> sp.csr_matrix:
    u = np.array([u for u, items in rows.items() for _ in items], dtype=np.int64)
    i = np.array([i for items in rows.values() for i in items], dtype=np.int64)
    return interactions_csr(u, i, n_users, n_items)


def test_hand_computed_including_test_larger_than_k_and_user_without_test() -> None:
    # user 0: test {1,2,3}, list [1,5,2,7]: hits at ranks 1 and 3
    # user 1: test {0..5} (|test| = 6 > K = 4), list [0,9,8,7]: one hit at rank 1
    # user 2: no test items, must be skipped although its list would "hit" nothing
    test = _test_csr({0: [1, 2, 3], 1: [0, 1, 2, 3, 4, 5]}, n_users=3, n_items=10)
    topk = np.array([[1, 5, 2, 7], [0, 9, 8, 7], [4, 5, 6, 7]])
    users = np.array([0, 1, 2])
    m = evaluate_topk(topk, users, test, ks=(4, 2), n_items=10)

    assert m["recall@4"] == pytest.approx((2 / 3 + 1 / 6) / 2)
    assert m["precision@4"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    ndcg_u0 = (1 + 1 / 2) / (1 + 1 / L3 + 1 / 2)  # IDCG over min(3, 4) = 3 ranks
    ndcg_u1 = 1 / (1 + 1 / L3 + 1 / 2 + 1 / math.log2(5))  # IDCG over min(6, 4) = 4 ranks
    assert m["ndcg@4"] == pytest.approx((ndcg_u0 + ndcg_u1) / 2)
    ap_u0 = (1 / 1 + 2 / 3) / 3  # precision at hit ranks / min(|test|, K)
    ap_u1 = (1 / 1) / 4
    assert m["map@4"] == pytest.approx((ap_u0 + ap_u1) / 2)
    assert m["hit_rate@4"] == pytest.approx(1.0)
    # coverage counts every list given, user 2's included: {1,5,2,7,0,9,8,4,6} = 9 of 10
    assert m["coverage@4"] == pytest.approx(0.9)

    # K = 2: user 0 hits rank 1 only; user 1 hits rank 1
    assert m["recall@2"] == pytest.approx((1 / 3 + 1 / 6) / 2)
    assert m["ndcg@2"] == pytest.approx((1 / (1 + 1 / L3) + 1 / (1 + 1 / L3)) / 2)
    assert m["map@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert set(m) == {
        f"{name}@{k}"
        for k in (4, 2)
        for name in ("recall", "ndcg", "precision", "hit_rate", "map", "coverage")
    }


def test_perfect_and_empty_lists() -> None:
    test = _test_csr({0: [3, 4]}, n_users=1, n_items=6)
    perfect = evaluate_topk(np.array([[4, 3, 0]]), np.array([0]), test, ks=(3,))
    assert perfect["recall@3"] == perfect["ndcg@3"] == perfect["map@3"] == 1.0
    # -1 pads a list that ran out of candidates; it never counts as a hit
    empty = evaluate_topk(np.array([[-1, -1, -1]]), np.array([0]), test, ks=(3,))
    assert empty["recall@3"] == empty["ndcg@3"] == empty["hit_rate@3"] == 0.0
    assert empty["coverage@3"] == 0.0


def _reference(topk: np.ndarray, test_sets: list[set[int]], k: int) -> dict[str, float]:
    """Per-user loop, written from the LightGCN reference's definitions."""
    rec, prec, ndcg, hit, ap = [], [], [], [], []
    for row, truth in zip(topk, test_sets, strict=True):
        if not truth:
            continue
        r = [1.0 if int(x) in truth else 0.0 for x in row[:k]]
        rec.append(sum(r) / len(truth))
        prec.append(sum(r) / k)
        dcg = sum(v / math.log2(j + 2) for j, v in enumerate(r))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(truth), k)))
        ndcg.append(dcg / idcg)
        hit.append(float(sum(r) > 0))
        ap.append(sum(sum(r[: j + 1]) / (j + 1) for j in range(k) if r[j]) / min(len(truth), k))
    return {
        f"recall@{k}": float(np.mean(rec)),
        f"precision@{k}": float(np.mean(prec)),
        f"ndcg@{k}": float(np.mean(ndcg)),
        f"hit_rate@{k}": float(np.mean(hit)),
        f"map@{k}": float(np.mean(ap)),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_user_reference_on_random_lists(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 40, 30, 10
    test_sets = [
        set(rng.choice(n_items, rng.integers(0, 15), replace=False).tolist())
        for _ in range(n_users)
    ]
    test = _test_csr({u: sorted(s) for u, s in enumerate(test_sets)}, n_users, n_items)
    topk = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    got = evaluate_topk(topk, np.arange(n_users), test, ks=(k, 3))
    for kk in (k, 3):
        for key, want in _reference(topk, test_sets, kk).items():
            assert got[key] == pytest.approx(want), key


def test_users_subset_maps_rows_of_test_matrix() -> None:
    test = _test_csr({5: [2], 7: [3]}, n_users=8, n_items=4)
    m = evaluate_topk(np.array([[3, 2], [3, 2]]), np.array([7, 5]), test, ks=(1,))
    assert m["recall@1"] == pytest.approx(0.5)  # user 7 hits at rank 1, user 5 does not


def test_coverage() -> None:
    topk = np.array([[0, 1], [1, 2]])
    assert catalogue_coverage(topk, 10, 2) == pytest.approx(0.3)
    assert catalogue_coverage(topk, 10, 1) == pytest.approx(0.2)
    with pytest.raises(InputError):
        catalogue_coverage(topk, 2, 2)  # item 2 outside a 2-item catalogue


def test_validation_errors() -> None:
    hits = np.array([[True, False]])
    with pytest.raises(InputError, match="k=3"):
        recall_at_k(hits, np.array([1]), 3)
    with pytest.raises(InputError, match="boolean"):
        ndcg_at_k(hits.astype(int), np.array([1]), 1)
    with pytest.raises(InputError, match="no user has a test item"):
        precision_at_k(~hits & hits, np.array([0]), 1)
    with pytest.raises(InputError, match="more hits"):
        map_at_k(np.array([[True, True]]), np.array([1]), 2)
    with pytest.raises(InputError, match="one entry per user"):
        hit_rate_at_k(hits, np.array([1, 1]), 1)
    test = _test_csr({0: [1]}, 1, 3)
    with pytest.raises(InputError, match="beyond n_items"):
        hit_matrix(np.array([[5]]), np.array([0]), test)
    with pytest.raises(InputError, match="shape"):
        hit_matrix(np.array([[1], [2]]), np.array([0]), test)
