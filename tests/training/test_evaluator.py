from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.errors import InputError
from recsys.evaluation.ranking import topk_full_ranking
from recsys.training.evaluator import topk_on_device


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    n_users, n_items, d = 50, 30, 8
    users = torch.from_numpy(rng.normal(size=(n_users, d)).astype(np.float32))
    items = torch.from_numpy(rng.normal(size=(n_items, d)).astype(np.float32))
    dense = rng.random((n_users, n_items)) < 0.2
    dense[3, :] = True  # every item known: nothing to rank
    dense[4, :] = True
    dense[4, :2] = False  # two items left: slots 2.. stay -1
    return users, items, sp.csr_matrix(dense.astype(np.float32))


def test_device_topk_equals_the_cpu_ranking() -> None:
    users, items, train = _case()
    ids = np.arange(users.shape[0])
    expected = topk_full_ranking(
        lambda b: (users[b] @ items.T).numpy(), ids, train, k=5, batch_size=7
    )
    got = topk_on_device(users, items, ids, train, k=5, batch_size=7)
    np.testing.assert_array_equal(got, expected)
    assert (got[3] == -1).all() and (got[4, 2:] == -1).all() and (got[4, :2] >= 0).all()


def test_device_topk_with_k_above_the_catalogue() -> None:
    users, items, train = _case(1)
    ids = np.arange(10)
    got = topk_on_device(users, items, ids, train, k=40)
    expected = topk_full_ranking(lambda b: (users[b] @ items.T).numpy(), ids, train, k=40)
    np.testing.assert_array_equal(got, expected)


def test_device_topk_rejects_nan_scores() -> None:
    users, items, train = _case()
    users[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        topk_on_device(users, items, np.arange(5), train, k=5)
