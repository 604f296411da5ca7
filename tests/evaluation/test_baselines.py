"""Baselines on a small planted-signal dataset, and the filters' maths on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.errors import InputError
from recsys.evaluation.baselines import (
    EASE,
    GFCF,
    PolyFilter,
    Popularity,
    Recommender,
    normalized_interactions,
)
from recsys.evaluation.ranking import evaluate_scorer, interactions_csr


def planted(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Users in 5 taste groups; 85 % of a user's items come from their group's 40 items.

    A mild global popularity skew makes popularity a non-trivial baseline.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, n_groups = 300, 200, 5
    group_items = np.arange(n_items).reshape(n_groups, -1)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.5
    rows, cols = [], []
    for u in range(n_users):
        g = u % n_groups
        n = int(rng.integers(12, 25))
        n_in = round(0.85 * n)
        own = rng.choice(group_items[g], n_in, replace=False)
        other = rng.choice(n_items, n - n_in, replace=False, p=pop / pop.sum())
        items = np.unique(np.concatenate([own, other]))
        rows += [u] * items.size
        cols += items.tolist()
    u_arr, i_arr = np.array(rows), np.array(cols)
    is_test = rng.random(u_arr.size) < 0.2
    train = interactions_csr(u_arr[~is_test], i_arr[~is_test], n_users, n_items)
    test = interactions_csr(u_arr[is_test], i_arr[is_test], n_users, n_items)
    return train, test


@pytest.fixture(scope="module")
def data() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    return planted()


def _eval(model: Recommender, data: tuple[sp.csr_matrix, sp.csr_matrix]) -> dict[str, float]:
    train, test = data
    model.fit(train)
    return evaluate_scorer(model.score, train, test, ks=(10,), batch_size=64)


def test_filters_beat_popularity_on_planted_signal(
    data: tuple[sp.csr_matrix, sp.csr_matrix],
) -> None:
    pop = _eval(Popularity(), data)
    results = {
        "ease": _eval(EASE(l2=50.0), data),
        "gf-cf": _eval(GFCF(k=16, alpha=0.3), data),
        "poly": _eval(PolyFilter(k=16), data),
    }
    for name, m in results.items():
        assert m["recall@10"] > 1.5 * pop["recall@10"], (name, m, pop)
        assert m["ndcg@10"] > 1.5 * pop["ndcg@10"], (name, m, pop)


def test_all_satisfy_the_protocol() -> None:
    for model in (Popularity(), EASE(), GFCF(), PolyFilter()):
        assert isinstance(model, Recommender)
        assert isinstance(model.name, str)


def test_gfcf_matches_dense_formula() -> None:
    rng = np.random.default_rng(1)
    d = (rng.random((30, 20)) < 0.2).astype(np.float32)
    d[:, 19] = 0  # an item without interactions must not produce inf or NaN
    r = sp.csr_matrix(d)
    dense = r.toarray().astype(np.float64)
    du, di = dense.sum(1), dense.sum(0)

    def inv(d: np.ndarray) -> np.ndarray:
        return np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0.0)

    rn = inv(du)[:, None] * dense * inv(di)[None, :]
    _, _, vt = np.linalg.svd(rn)
    k = 5
    ideal = np.diag(inv(di)) @ vt[:k].T @ vt[:k] @ np.diag(np.sqrt(di))
    want = dense @ (rn.T @ rn) + 0.3 * dense @ ideal
    m = GFCF(k=k, alpha=0.3)
    m.fit(r)
    users = np.arange(30)
    got = m.score(users)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # the polynomial filter with GF-CF's coefficients is GF-CF
    p = PolyFilter(coefs=(0.0, 1.0), k=k, alpha=0.3, ideal_coefs=(1.0,), degree_exponent=0.0)
    p.fit(r)
    np.testing.assert_allclose(p.score(users), got, rtol=1e-4, atol=1e-5)
    # and a second power is applied exactly: r (P - 0.5 P^2) + alpha (ideal - 0.25 ideal P)
    p2 = PolyFilter((0.0, 1.0, -0.5), k=k, alpha=0.3, ideal_coefs=(1.0, -0.25), degree_exponent=0)
    p2.fit(r)
    pm = rn.T @ rn
    want2 = dense @ (pm - 0.5 * pm @ pm) + 0.3 * (dense @ ideal - 0.25 * dense @ ideal @ pm)
    np.testing.assert_allclose(p2.score(users), want2, rtol=1e-4, atol=1e-5)
    # the degree correction rescales item columns by max(d_i, 1)^gamma
    p3 = PolyFilter(coefs=(0.0, 1.0), k=k, alpha=0.3, ideal_coefs=(1.0,), degree_exponent=-0.5)
    p3.fit(r)
    scale = np.maximum(di, 1.0) ** -0.5
    np.testing.assert_allclose(p3.score(users), want * scale, rtol=1e-4, atol=1e-5)
    # the input exponent reweights the history before filtering
    p4 = PolyFilter(coefs=(0.0, 1.0), k=k, alpha=0.3, ideal_coefs=(1.0,), degree_exponent=0.0)
    p4.input_exponent = 0.5
    p4.fit(r)
    x = dense * np.maximum(di, 1.0) ** 0.5
    want4 = x @ (rn.T @ rn) + 0.3 * x @ ideal
    np.testing.assert_allclose(p4.score(users), want4, rtol=1e-4, atol=1e-5)


def test_normalized_interactions_handles_empty_rows_and_columns() -> None:
    r = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=np.float32))
    norm, di = normalized_interactions(r)
    assert di.tolist() == [2, 1, 0]
    assert np.isfinite(norm.toarray()).all()
    assert norm[0, 0] == pytest.approx(1 / np.sqrt(1 * 2))


def test_ease_refuses_large_catalogues_and_popularity_scores_counts() -> None:
    r = sp.csr_matrix(np.eye(5, 30, dtype=np.float32))
    with pytest.raises(InputError, match="max_items"):
        EASE(max_items=20).fit(r)
    p = Popularity()
    p.fit(sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32)))
    assert p.score(np.array([1])).tolist() == [[2, 0, 1]]
    with pytest.raises(RuntimeError):
        GFCF().score(np.array([0]))
    with pytest.raises(InputError):
        Popularity().fit(sp.csr_matrix((3, 3)))


def test_poly_filter_is_an_item_item_operator_on_any_history() -> None:
    """score_history of unseen histories is linear: the sum of the operator's rows (the
    identity's scores) over a history's items, weights included; the train rows give score."""
    rng = np.random.default_rng(3)
    r = sp.csr_matrix((rng.random((40, 25)) < 0.25).astype(np.float32))
    p = PolyFilter(k=6)
    p.fit(r)
    operator = p.score_history(sp.identity(25, dtype=np.float32, format="csr"))
    np.testing.assert_allclose(p.score_history(r), p.score(np.arange(40)), rtol=1e-6)
    history = np.zeros((3, 25), np.float32)
    history[0, [1, 4, 7]] = 1.0
    history[1, [0, 24]] = [2.0, 0.5]  # weighted, and items no train row has together
    want = history @ operator
    np.testing.assert_allclose(p.score_history(sp.csr_matrix(history)), want, rtol=1e-4, atol=1e-6)
    assert not p.score_history(sp.csr_matrix(history))[2].any()  # empty history: no score
