"""The item table's norm exponent: the rescaling, its choice on validation, and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN, rescale_items
from recsys.training.config import TrackingConfig, TrainConfig
from recsys.training.evaluator import RankingEvaluator
from recsys.training.item_norm import choose_item_norm
from recsys.training.loop import train

from .planted import planted


def test_rescale_items_scales_each_row_by_its_norm() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 0.5]])
    assert rescale_items(x, 0.0) is x
    np.testing.assert_allclose(rescale_items(x, 1.0).numpy(), [[0.6, 0.8], [0, 0], [0, 1.0]])
    np.testing.assert_allclose(rescale_items(x, -1.0).numpy(), [[15, 20], [0, 0], [0, 0.25]])


def test_forward_rescales_the_items_only() -> None:
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 12, 60), rng.integers(0, 9, 60)
    adj = normalized_adjacency(u, i, np.ones(60, np.float32), 12, 9, "sym")
    model = FeatureLightGCN(12, 9, embedding_dim=4, num_layers=2)
    with torch.no_grad():
        ue0, ie0 = model(adj)
        model.item_norm_power = 0.5
        ue, ie = model(adj)
    torch.testing.assert_close(ue, ue0)
    torch.testing.assert_close(ie, ie0 / ie0.norm(dim=1, keepdim=True).sqrt())


def _world(val_popular: bool) -> tuple[FeatureLightGCN, RankingEvaluator, object]:
    """Matrix factorisation with every user pointing along x. Items 0-29 are "popular" (norm 3,
    at 53 degrees: score 1.8), items 30-59 "niche" (norm 1, along x: score 1). Each user's
    validation item is a popular or a niche one."""
    n_users, n_items = 20, 60
    model = FeatureLightGCN(n_users, n_items, embedding_dim=2, num_layers=0)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0]]).repeat(n_users, 1))
        items = torch.tensor([[1.8, 2.4]] * 30 + [[1.0, 0.0]] * 30)
        items[:, 1] += torch.linspace(0, 1e-3, n_items)  # no exact ties inside a group
        model.item_embedding.weight.copy_(items)
    users = np.arange(n_users)
    known = np.zeros(n_users, np.int64) + 59  # one known niche item each, masked
    held = users if val_popular else 30 + users
    ev = RankingEvaluator(users, known, users, held, n_users, n_items, ks=(20,))
    adj = normalized_adjacency(users, known, np.ones(n_users, np.float32), n_users, n_items, "sym")
    return model, ev, adj


@pytest.mark.parametrize("val_popular, expect", [(False, 1.0), (True, 0.0)])
def test_the_exponent_that_ranks_the_validation_items_first_is_chosen(
    val_popular: bool, expect: float
) -> None:
    model, ev, adj = _world(val_popular)
    cfg = TrainConfig(item_norm_powers=[-0.5, 1.0], progress=False)
    choice = choose_item_norm(model, adj, ev, cfg)  # type: ignore[arg-type]
    assert choice is not None and choice.weight == expect
    assert set(choice.scores) == {0.0, -0.5, 1.0}
    # popular validation items: 0 and -0.5 both rank them all first; the tie goes to 0
    assert model.item_norm_power == 0.0  # left as it came


def test_no_candidates_no_choice() -> None:
    model, ev, adj = _world(False)
    assert choose_item_norm(model, adj, ev, TrainConfig(progress=False)) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("fold", [0, 1])
def test_training_chooses_the_exponent_on_validation_and_keeps_it(fold: int) -> None:
    p = planted(seed=2)
    cfg = TrainConfig.model_validate(
        dict(
            embedding_dim=16,
            num_layers=2,
            epochs=2,  # with a fold: epoch 1's validation is the best so far, so it folds
            batch_size=512,
            eval_every=1,
            patience=100,
            val_fraction=0.2,
            fold_validation_epochs=fold,
            item_item_keep=0,
            item_norm_powers=[-1.0, 1.0, 2.0],
            progress=False,
            threads=1,
            tracking=TrackingConfig(enabled=False),
        )
    )
    result = train(p.data, cfg)
    scores = {float(g): v for g, v in result.extra["item_norm_validation"].items()}
    assert set(scores) == {0.0, -1.0, 1.0, 2.0}
    best = max(scores, key=lambda g: (scores[g], -abs(g)))
    assert result.extra["item_norm_power"] == best == result.model.item_norm_power
    assert result.extra["folded_validation"] == bool(fold)
    # the candidates were really scored differently (the planted popularity skew)
    assert len(set(scores.values())) > 1


def test_bad_exponents_are_refused() -> None:
    with pytest.raises(ValueError, match=r"item_norm_powers must lie in \[-2, 2\]"):
        TrainConfig(item_norm_powers=[3.0])
    with pytest.raises(ValueError, match="set one"):
        TrainConfig(item_norm_powers=[0.5], blend_rank=8)
