"""Our ranking metrics against ``torch_geometric.metrics`` where both define the same quantity.

PyG's link-prediction metrics average over users with at least one relevant
item, use Recall = hits / |relevant|, NDCG with binary gains and the ideal DCG
over min(|relevant|, K), MAP normalised by min(|relevant|, K) and Coverage =
distinct recommended items / catalogue: the definitions of
:mod:`recsys.evaluation.metrics`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.metrics import (
    LinkPredCoverage,
    LinkPredHitRatio,
    LinkPredMAP,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from recsys.evaluation.ranking import evaluate_topk, interactions_csr


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_metrics_equal_pyg(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, list_len = 300, 80, 20
    # test sets of 0..30 items (some users have none: both skip them; some exceed K)
    sizes = rng.integers(0, 31, n_users)
    test_u = np.repeat(np.arange(n_users), sizes)
    test_i = np.concatenate([rng.choice(n_items, s, replace=False) for s in sizes])
    test = interactions_csr(test_u, test_i, n_users, n_items)
    # ranked lists that hit often: half of each list drawn from the user's test items
    topk = np.stack([rng.permutation(n_items)[:list_len] for _ in range(n_users)])
    for u in range(n_users):
        own = test_i[test_u == u]
        take = min(len(own), list_len // 2)
        if take:
            topk[u, rng.choice(list_len, take, replace=False)] = rng.choice(own, take, False)
            _, first = np.unique(topk[u], return_index=True)
            dup = np.setdiff1d(np.arange(list_len), first)
            topk[u, dup] = rng.choice(np.setdiff1d(np.arange(n_items), topk[u]), len(dup), False)
    users = np.arange(n_users)
    ours = evaluate_topk(topk, users, test, ks=(k,), n_items=n_items)

    pred = torch.from_numpy(topk[:, :k]).long()
    label = torch.from_numpy(np.stack([test_u, test_i])).long()
    pyg = {
        "recall": LinkPredRecall(k),
        "ndcg": LinkPredNDCG(k),
        "precision": LinkPredPrecision(k),
        "hit_rate": LinkPredHitRatio(k),
        "map": LinkPredMAP(k),
        "coverage": LinkPredCoverage(k, n_items),
    }
    assert (sizes > 0).sum() < n_users  # the comparison covers skipped users
    for name, metric in pyg.items():
        # coverage counts every list; ours counts the evaluated users' lists (all have one)
        lists = pred if name != "coverage" else pred[torch.from_numpy(sizes > 0)]
        metric.update(lists, label)
        assert ours[f"{name}@{k}"] == pytest.approx(float(metric.compute()), rel=1e-5, abs=1e-7), (
            name
        )
