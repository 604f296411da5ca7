"""Two GNNs side by side: the score is their weighted sum, and validation chooses the weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.evaluator import RankingEvaluator
from recsys.training.mixture import choose_mixture, mixture, spread_ratio
from recsys.training.training_graph import adjacency_for

from .planted import planted


def _model(data: InteractionData, dim: int, seed: int) -> FeatureLightGCN:
    assert data.user_features is not None and data.item_features is not None
    torch.manual_seed(seed)
    return FeatureLightGCN(
        data.n_users,
        data.n_items,
        embedding_dim=dim,
        num_layers=3,
        user_features=torch.from_numpy(data.user_features),
        item_features=torch.from_numpy(data.item_features),
    )


def test_side_by_side_scores_the_weighted_sum_on_any_graph() -> None:
    p = planted(n_users=60, n_items=40, per_user=8, features=True, seed=1)
    a, b = _model(p.data, 8, 0), _model(p.data, 5, 1)
    both = a.beside(b, 0.3)
    assert both.embedding_dim == 13
    adj = adjacency_for(p.data, TrainConfig())
    with torch.no_grad():
        ua, ia = a(adj)
        ub, ib = b(adj)
        u, i = both(adj)
    expected = ua @ ia.T + 0.3 * (ub @ ib.T)
    assert torch.allclose(u @ i.T, expected, atol=1e-5)
    # a user's layer 0 from features alone (the cold path) mixes the same way
    assert p.data.user_features is not None
    x = torch.randn(4, p.data.user_features.shape[1])
    got = both.project_user_features(x)
    assert torch.allclose(got[:, :8], a.project_user_features(x), atol=1e-6)
    assert torch.allclose(got[:, 8:], 0.3**0.5 * b.project_user_features(x), atol=1e-6)


def test_side_by_side_refuses_models_of_other_graphs_and_negative_weights() -> None:
    p = planted(n_users=60, n_items=40, per_user=8, features=True, seed=1)
    q = planted(n_users=60, n_items=41, per_user=8, features=True, seed=1)
    a = _model(p.data, 8, 0)
    with pytest.raises(ValueError, match="share users, items"):
        a.beside(_model(q.data, 8, 0), 0.5)
    other_features = _model(p.data, 8, 0)
    assert other_features.item_features is not None
    other_features.item_features = other_features.item_features + 1
    with pytest.raises(ValueError, match="features"):
        a.beside(other_features, 0.5)
    with pytest.raises(ValueError, match="weight"):
        a.beside(_model(p.data, 8, 1), -0.1)


def test_validation_takes_the_planted_model_in_and_leaves_noise_out() -> None:
    p = planted(n_users=300, n_items=120, per_user=12, features=True, seed=2)
    split = split_validation(p.data, 0.25, seed=0)
    cfg = TrainConfig()
    adj = adjacency_for(split.train, cfg)
    evaluator = RankingEvaluator.of_validation(split)
    # a model that knows the clusters, and one of noise
    k = int(p.user_cluster.max()) + 1
    knows = _model(p.data, k, 0)
    with torch.no_grad():
        knows.user_embedding.weight.copy_(torch.from_numpy(np.eye(k)[p.user_cluster]).float())
        knows.item_embedding.weight.copy_(torch.from_numpy(np.eye(k)[p.item_cluster]).float())
        assert knows.user_proj is not None and knows.item_proj is not None
        for proj in (knows.user_proj, knows.item_proj):
            proj.weight.zero_()
            proj.bias.zero_()
    noise = _model(p.data, k, 3)
    weights = [0.25, 1.0, 4.0]
    kept = choose_mixture(knows, noise, adj, evaluator, weights, "recall@20", seed=0)
    assert kept.weight == 0.0 and kept.scores[0.0] > kept.scores[4.0]
    taken = choose_mixture(noise, knows, adj, evaluator, weights, "recall@20", seed=0)
    assert taken.weight == 4.0 and taken.scores[4.0] > taken.scores[0.0]
    # the ratio makes the weight a share of spreads: B's spread w times A's
    ratio = spread_ratio(noise, knows, adj, seed=0)
    assert ratio > 0
    mixed = mixture(noise, knows, 1.0, adj, seed=0)
    assert mixed.embedding_dim == 2 * k
    with pytest.raises(ValueError, match=">= 0"):
        choose_mixture(noise, knows, adj, evaluator, [-1.0], "recall@20", seed=0)
