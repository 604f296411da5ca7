"""Two trained GNNs as one model, the second's weight chosen on validation.

Two recipes on the same graph err in different places: on Gowalla the model distilled from
the graph filter with hard negatives reaches further into the catalogue than the plain BPR
recipe. :meth:`~recsys.models.lightgcn.FeatureLightGCN.beside` puts two models side by side
as one ``FeatureLightGCN`` scoring

    s(u, i) = s_A(u, i) + w * r * s_B(u, i)

where ``r`` is the ratio of A's score spread to B's (std over every item, a fixed sample of
users: :func:`~recsys.training.blend.score_spread`), so ``w`` is B's share in A's units and
``w = 0`` is A alone. The mixture is served, exported and folded in exactly as any model is.

The weight is chosen on validation (the carve both members trained without); the members of
the final mixture may be later checkpoints of the same runs (after the validation pairs
joined training), each pair of members measuring its own ``r``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.blend import BlendChoice, best_weight, scale_sample, score_spread
from recsys.training.evaluator import RankingEvaluator


def spread_ratio(
    a: FeatureLightGCN, b: FeatureLightGCN, adj: NormalizedAdjacency, seed: int
) -> float:
    """``spread(s_A) / spread(s_B)`` over every item for a fixed, seeded sample of users."""
    return _embedded(a, b, adj, seed)[1]


def _embedded(
    a: FeatureLightGCN, b: FeatureLightGCN, adj: NormalizedAdjacency, seed: int
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], float]:
    """Both models' final embeddings on ``adj``, and the ratio of their score spreads."""
    sample = scale_sample(adj.num_users, seed)
    with torch.no_grad():
        ua, ia = a(adj)
        ub, ib = b(adj)
    ratio = score_spread(ua, ia, sample) / max(score_spread(ub, ib, sample), 1e-30)
    return (ua, ia, ub, ib), ratio


def mixture(
    a: FeatureLightGCN, b: FeatureLightGCN, weight: float, adj: NormalizedAdjacency, seed: int
) -> FeatureLightGCN:
    """A and B side by side, B's score spread ``weight`` times A's on ``adj``."""
    return a.beside(b, weight * spread_ratio(a, b, adj, seed))


def choose_mixture(
    a: FeatureLightGCN,
    b: FeatureLightGCN,
    adj: NormalizedAdjacency,
    evaluator: RankingEvaluator,
    weights: list[float],
    select_metric: str,
    seed: int,
) -> BlendChoice:
    """The weight among ``weights`` and 0 with the best validation ``select_metric``.

    ``adj``: the graph both members trained on, the validation pairs held out.
    """
    if any(w < 0 for w in weights):
        raise ValueError(f"mixture weights must be >= 0, got {weights}")
    (ua, ia, ub, ib), ratio = _embedded(a, b, adj, seed)

    def metrics(w: float) -> dict[str, float]:
        c = math.sqrt(w * ratio)
        return evaluator.evaluate(torch.cat([ua, c * ub], 1), torch.cat([ia, c * ib], 1))

    return best_weight(weights, metrics, select_metric, "mixture")
