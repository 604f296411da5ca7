"""The losses against their definitions (recsys.training.losses docstring)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F

from recsys.training import losses


def _t(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_bpr_is_the_mean_pairwise_softplus() -> None:
    pos, neg = _t(5), _t(5, 3, seed=1)
    expect = np.mean(
        [[math.log1p(math.exp(float(neg[b, j] - pos[b]))) for j in range(3)] for b in range(5)]
    )
    assert float(losses.bpr(pos, neg)) == pytest.approx(expect, rel=1e-12)


def test_softmax_with_every_other_item_is_the_full_cross_entropy() -> None:
    # 6 users, 10 items: each row's positive against all 10 items, the positive masked out of
    # the negatives, equals torch's cross-entropy over all items
    user, items = _t(6, 4), _t(10, 4, seed=1)
    target = torch.tensor([0, 3, 3, 9, 5, 1])
    logits = user @ items.T
    tau = 0.3
    pos, neg = losses.scores(user, items[target], items)
    mask = target.unsqueeze(1) != torch.arange(10).unsqueeze(0)
    got = losses.softmax(pos, neg, tau, neg_mask=mask)
    torch.testing.assert_close(got, F.cross_entropy(logits / tau, target))
    # per-row temperatures and the log-Q correction, against a literal reading of the formula
    taus = torch.tensor([0.1, 0.2, 0.3, 0.5, 1.0, 2.0], dtype=torch.float64)
    log_q = torch.log(torch.linspace(0.01, 0.19, 10, dtype=torch.float64))
    rows = losses.softmax(pos, neg, taus, neg_mask=mask, log_q=log_q, reduce=False)
    for b in range(6):
        terms = [math.exp(float(pos[b] / taus[b]))] + [
            math.exp(float(neg[b, j] / taus[b] - log_q[j])) for j in range(10) if mask[b, j]
        ]
        assert float(rows[b]) == pytest.approx(math.log(sum(terms)) - float(pos[b] / taus[b]))


def test_scores_of_shared_and_per_positive_negatives_agree() -> None:
    user, pos, shared = _t(4, 3), _t(4, 3, seed=1), _t(5, 3, seed=2)
    s_pos, s_shared = losses.scores(user, pos, shared)
    _, s_each = losses.scores(user, pos, shared.unsqueeze(0).expand(4, 5, 3))
    torch.testing.assert_close(s_shared, s_each)
    torch.testing.assert_close(s_pos, (user * pos).sum(-1))


def test_info_nce_is_cross_entropy_of_cosine_logits() -> None:
    a, b = _t(7, 5), _t(7, 5, seed=1)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.2
    torch.testing.assert_close(losses.info_nce(a, b, 0.2), F.cross_entropy(logits, torch.arange(7)))


def test_lambert_w_matches_scipy() -> None:
    x = np.concatenate([[-0.3678, -0.36, -0.3, -0.1, 0.0], np.geomspace(1e-6, 1e6, 60)])
    np.testing.assert_allclose(
        losses.lambert_w(x), scipy.special.lambertw(x).real, rtol=1e-9, atol=1e-9
    )
    assert losses.lambert_w(np.array([-1 / math.e]))[0] == pytest.approx(-1.0, abs=1e-6)
    with pytest.raises(ValueError):
        losses.lambert_w(np.array([-0.5]))


def test_adaptive_temperature() -> None:
    loss = np.array([2.0, 4.0, 6.0, np.nan, 10.0, -5.0])
    tau = losses.adaptive_temperature(loss, 0.1, spread=5.0)
    seen = np.isfinite(loss)
    mean = loss[seen].mean()
    # tau_u = tau * exp(W(x_u)), x_u = clamp((l_u - mean) / spread, -1/e): increasing in the loss
    x = (loss[seen] - mean) / 5.0
    inside = x > -1 / math.e
    np.testing.assert_allclose(
        tau[seen][inside], 0.1 * np.exp(scipy.special.lambertw(x[inside]).real), rtol=1e-9
    )
    np.testing.assert_allclose(tau[seen][~inside], 0.1 / math.e, rtol=1e-6)
    assert tau[3] == 0.1  # not seen yet: the base temperature
    assert tau[5] == pytest.approx(0.1 / math.e)  # the floor
    order = np.argsort(loss[seen])
    assert np.all(np.diff(tau[seen][order]) > 0)
    # a user at the mean loss gets the base temperature
    assert losses.adaptive_temperature(np.array([3.0, 3.0]), 0.2, 1.0).tolist() == [0.2, 0.2]
