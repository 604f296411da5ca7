"""The production bundle scores today's holdout users from today's train history (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.bundle import BundleMeta, write_bundle
from recsys.errors import InputError
from recsys.evaluation.holdout import Holdout
from recsys.evaluation.production import production_scorer
from recsys.evaluation.ranking import interactions_csr
from recsys.export.synthetic import synthetic_tables


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[str, object]:
    t = synthetic_tables(n_users=30, n_items=25, dim=8, num_layers=2, seed=3)
    uri = str(tmp_path / "bundle")
    meta = BundleMeta(version="prod-1", num_layers=2, embedding_dim=8, num_users=30, num_items=25)
    write_bundle(t, uri, meta)
    return uri, t


def _reference(t: object, user: int, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """numpy's fold-in of one bundle user from a given history (bundle item indices)."""
    s = t.item_S.astype(np.float64)  # type: ignore[attr-defined]
    inv = t.item_inv_sqrt_deg.astype(np.float64)  # type: ignore[attr-defined]
    w = weights.astype(np.float64)
    agg = (w[:, None] / np.sqrt(w.sum()) * inv[items][:, None] * s[items]).sum(axis=0)
    e = (t.user_e0[user].astype(np.float64) + agg) / 3  # type: ignore[attr-defined]
    out: np.ndarray = e @ t.item_final.astype(np.float64).T  # type: ignore[attr-defined]
    return out


def test_scores_follow_the_fold_in_of_todays_history_in_todays_item_order(
    bundle: tuple[str, object],
) -> None:
    uri, t = bundle
    b_users = np.asarray(t.user_ids).astype(str)  # type: ignore[attr-defined]
    b_items = np.asarray(t.item_ids).astype(str)  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    # today's snapshot: the ids in another order, one new user and one new product
    user_ids = np.concatenate([b_users[rng.permutation(30)], ["new-user"]])
    item_ids = np.concatenate([b_items[rng.permutation(25)], ["new-product"]])
    tu = np.array([0, 0, 0, 1, 1, 30, 30])
    ti = np.array([2, 7, 25, 4, 5, 1, 3])  # user 0 also touched the new product (index 25)
    tw = np.array([1.0, 2.0, 1.5, 0.7, 0.3, 1.0, 1.0], dtype=np.float32)
    prod = production_scorer(uri, user_ids, item_ids, tu, ti, tw)
    assert prod.version == "prod-1"
    assert prod.known(np.arange(31)).tolist() == [True] * 30 + [False]
    scores = prod.score(np.array([0, 1]))
    assert scores.shape == (2, 26) and np.isneginf(scores[:, 25]).all()
    for row, user in enumerate((0, 1)):
        b_user = int(np.flatnonzero(b_users == user_ids[user])[0])
        keep = (tu == user) & (ti < 25)  # the new product has no row in the bundle's tables
        b_hist = np.array([int(np.flatnonzero(b_items == item_ids[i])[0]) for i in ti[keep]])
        want = _reference(t, b_user, b_hist, tw[keep])
        got_in_bundle_order = np.empty(25)
        for j in range(25):
            got_in_bundle_order[int(np.flatnonzero(b_items == item_ids[j])[0])] = scores[row, j]
        np.testing.assert_allclose(got_in_bundle_order, want, rtol=2e-5, atol=2e-5)
    with pytest.raises(InputError, match="unknown to it"):
        prod.score(np.array([30]))


def test_holdout_scoring_leaves_unknown_users_unscored(bundle: tuple[str, object]) -> None:
    uri, t = bundle
    user_ids = np.concatenate([np.asarray(t.user_ids).astype(str), ["new-user"]])  # type: ignore[attr-defined]
    item_ids = np.asarray(t.item_ids).astype(str)  # type: ignore[attr-defined]
    tu, ti = np.array([0, 1, 2, 30]), np.array([1, 2, 3, 4])
    prod = production_scorer(uri, user_ids, item_ids, tu, ti, np.ones(4, np.float32))
    holdout = Holdout(
        interactions_csr(tu, ti, 31, 25),
        interactions_csr(np.array([0, 1, 30]), np.array([5, 6, 7]), 31, 25),
        np.array([0, 1, 30]),
    )
    known = prod.known(holdout.users)
    rows = holdout.score(prod.score, scorable=known)
    assert known.tolist() == [True, True, False]
    assert np.isfinite(rows["ndcg@20"][:2]).all() and np.isnan(rows["ndcg@20"][2])


def test_a_damaged_bundle_is_refused(bundle: tuple[str, object]) -> None:
    uri, _ = bundle
    (Path(uri) / "item_final.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"item_final\.npy"):
        production_scorer(
            uri,
            np.array(["u"]),
            np.array(["p"]),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
        )
