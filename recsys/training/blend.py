"""A GNN + graph-filter blend that the serving fold-in computes exactly.

A low-pass graph filter on the normalised interaction matrix
``R~ = D_U^-1/2 R D_I^-1/2 ~ U S V^T`` scores ``r~_u V g(S) V^T``, and
``r~_u = sum_i w_ui / sqrt(d_u d_i) * e_i`` is exactly the sum the fold-in
computes from a user's history. So the filter fits inside the GNN as ``k``
fixed embedding columns: items' layer 0 gets ``c * V S^p`` (``[I, k]``), users'
gets zeros, and the LightGCN propagation does the rest
(:meth:`recsys.models.FeatureLightGCN.with_item_columns`). With ``K`` layers the
columns' readout scores ``c^2 r~_u V h(S) V^T`` with
``h(s) = s^(2p) * (sum over the odd / even powers of s the readout keeps)``; for
``K = 3``, ``h(s) = s^2p (1 + s^2)^2 / 16``. The blended model is a plain
FeatureLightGCN of size ``d + k``: same propagation, same exact fold-in, same
ONNX scorer; a new interaction moves both parts of the score at once.

The weight is chosen on validation, never on the holdout: ``c^2`` makes the
filter's score spread ``weight`` times the GNN's (both measured on a sample of
users), for each candidate weight and 0 (no blend); the best validation metric
wins. The filter of the final model comes from the graph the model serves
(validation pairs included), with the chosen weight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.evaluator import RankingEvaluator
from recsys.training.init import normalized_svd

log = get_logger(__name__)

SCALE_USERS = 512
"""Users whose score spread sets the filter's scale (a fixed, seeded sample)."""


@dataclass
class BlendChoice:
    """The weight chosen on validation (0: no blend) and each candidate's validation metric."""

    weight: float
    scores: dict[float, float] = field(default_factory=dict)
    reason: str = ""
    """Why no weight was tried, when none was (the candidates' scores are then empty)."""


def spectral_columns(data: InteractionData, rank: int, power: float, seed: int) -> Tensor:
    """``V S^power`` ``[I, k]`` float32 from the top ``rank`` singular triplets of ``R~``."""
    _, s, vt = normalized_svd(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items, rank, seed
    )
    cols = vt.T * np.clip(s, 0, None) ** power
    return torch.from_numpy(np.ascontiguousarray(cols, dtype=np.float32))


def scale_sample(num_users: int, seed: int) -> Tensor:
    """The fixed, seeded sample of users whose score spread sets a filter's scale."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(num_users, generator=gen)[:SCALE_USERS]


def score_spread(users: Tensor, items: Tensor, sample: Tensor) -> float:
    """std of the dot-product scores of the ``sample`` users over every item."""
    return float((users[sample.to(users.device)] @ items.T).float().std())


def _scale(
    model: FeatureLightGCN, columns: Tensor, adj: NormalizedAdjacency, seed: int
) -> tuple[float, Tensor, Tensor, Tensor, Tensor]:
    """The ratio of the GNN's score spread to the columns' (a weight ``w`` scales the
    columns by ``sqrt(w * ratio)``), and both parts' final embeddings (the columns through
    the model's own propagation, users' layer 0 zero)."""
    with torch.no_grad():
        ue, ie = model(adj)
        x0 = torch.cat([columns.new_zeros(adj.num_users, columns.shape[1]), columns])
        x = model.smooth(x0.to(adj.device), adj)
        fu, fi = x[: adj.num_users], x[adj.num_users :]
    sample = scale_sample(adj.num_users, seed)
    ratio = score_spread(ue, ie, sample) / max(score_spread(fu, fi, sample), 1e-30)
    return ratio, ue, ie, fu, fi


def choose_blend(
    model: FeatureLightGCN,
    train_data: InteractionData,
    adj: NormalizedAdjacency,
    evaluator: RankingEvaluator,
    cfg: TrainConfig,
) -> BlendChoice:
    """The blend weight with the best validation ``cfg.select_metric`` (0 among the candidates).

    ``train_data`` / ``adj``: the graph the model trained on (validation pairs held out).
    """
    columns = spectral_columns(train_data, cfg.blend_rank, cfg.blend_power, cfg.seed)
    ratio, ue, ie, fu, fi = _scale(model, columns, adj, cfg.seed)

    def metrics(w: float) -> dict[str, float]:
        c = math.sqrt(w * ratio)
        return evaluator.evaluate(torch.cat([ue, c * fu], 1), torch.cat([ie, c * fi], 1))

    return best_weight(cfg.blend_weights, metrics, cfg.select_metric, "blend")


def best_weight(
    weights: list[float],
    metrics: Callable[[float], dict[str, float]],
    select_metric: str,
    what: str,
) -> BlendChoice:
    """The weight among ``weights`` and 0 whose validation ``metrics(w)`` score best on
    ``select_metric`` (ties go to the lighter weight), with every candidate's score."""
    scores: dict[float, float] = {}
    for w in [0.0, *weights]:
        scores[w] = metrics(w).get(select_metric, -math.inf)
    best = max(scores, key=lambda w: (scores[w], -w))
    log.info(
        "%s weights on validation (%s): %s -> %s",
        what,
        select_metric,
        ", ".join(f"{w:g}: {v:.5f}" for w, v in scores.items()),
        best,
    )
    return BlendChoice(best, scores)


def blended(
    model: FeatureLightGCN,
    data: InteractionData,
    adj: NormalizedAdjacency,
    cfg: TrainConfig,
    weight: float,
) -> FeatureLightGCN:
    """``model`` with the filter columns of ``data`` (the served graph, adjacency ``adj``) at
    ``weight``."""
    columns = spectral_columns(data, cfg.blend_rank, cfg.blend_power, cfg.seed)
    ratio, *_ = _scale(model, columns, adj, cfg.seed)
    out = model.with_item_columns(columns * math.sqrt(weight * ratio))
    out.eval()
    return out
