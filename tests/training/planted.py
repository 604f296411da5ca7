"""A small interaction set with a planted cluster structure (shared by the training tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.training.data import InteractionData


@dataclass(frozen=True)
class Planted:
    data: InteractionData
    test_user: np.ndarray
    test_item: np.ndarray
    cold_users: np.ndarray
    user_cluster: np.ndarray
    item_cluster: np.ndarray


def planted(
    n_users: int = 400,
    n_items: int = 240,
    n_clusters: int = 6,
    per_user: int = 10,
    in_cluster: float = 0.85,
    n_cold: int = 0,
    features: bool = False,
    seed: int = 0,
) -> Planted:
    """Users of cluster ``c`` pick items of cluster ``c`` with probability ``in_cluster``.

    Items have a popularity skew (Zipf-like within each cluster) so popularity is
    a real baseline; half of each user's items go to test. ``n_cold`` users keep
    no training interaction at all (only their features, when ``features``, tell
    their cluster: a noisy one-hot).
    """
    rng = np.random.default_rng(seed)
    uc = rng.integers(0, n_clusters, n_users)
    ic = np.arange(n_items) % n_clusters
    pop = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.6
    users, items = [], []
    for u in range(n_users):
        same = ic == uc[u]
        p = np.where(
            same, pop * in_cluster / pop[same].sum(), pop * (1 - in_cluster) / pop[~same].sum()
        )
        chosen = rng.choice(n_items, size=per_user, replace=False, p=p / p.sum())
        users += [u] * per_user
        items += chosen.tolist()
    user = np.array(users, dtype=np.int64)
    item = np.array(items, dtype=np.int64)
    is_test = np.zeros(len(user), dtype=bool)
    for u in range(n_users):
        rows = np.flatnonzero(user == u)
        is_test[rng.choice(rows, size=per_user // 2, replace=False)] = True
    cold = rng.choice(n_users, size=n_cold, replace=False) if n_cold else np.zeros(0, np.int64)
    is_cold_row = np.isin(user, cold)
    is_test |= is_cold_row
    train = ~is_test
    uf = itf = None
    if features:
        eye = np.eye(n_clusters, dtype=np.float32)
        uf = eye[uc] + rng.normal(0, 0.3, (n_users, n_clusters)).astype(np.float32)
        itf = eye[ic] + rng.normal(0, 0.3, (n_items, n_clusters)).astype(np.float32)
    weight = rng.choice(np.array([1.0, 2.0, 4.0], dtype=np.float32), size=int(train.sum()))
    data = InteractionData(
        n_users=n_users,
        n_items=n_items,
        train_user=user[train],
        train_item=item[train],
        train_weight=weight,
        user_features=uf,
        item_features=itf,
    )
    return Planted(data, user[is_test], item[is_test], np.sort(cold), uc, ic)
