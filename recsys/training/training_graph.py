"""What a training phase trains on: the normalised adjacency, the edges and their samplers.

A run builds one for the training graph (validation pairs held out) and, when the
validation pairs are folded back for the last epochs, another for every pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency, normalized_adjacency
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.distill import Teacher, teacher_top
from recsys.training.sampling import NegativeSampler, NeighborSampler, PositiveSampler

log = get_logger(__name__)


def adjacency_for(data: InteractionData, cfg: TrainConfig) -> NormalizedAdjacency:
    """The ``cfg.norm``-normalised adjacency of ``data``'s training pairs (what the model
    propagates over)."""
    return normalized_adjacency(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items, cfg.norm
    )


class TrainingEdges:
    """The training edges and samplers of one training graph, shared by both modes."""

    def __init__(self, data: InteractionData, device: torch.device) -> None:
        user = torch.from_numpy(data.train_user).to(device)
        item = torch.from_numpy(data.train_item).to(device)
        weight = torch.from_numpy(data.train_weight).to(device)
        self.neg = NegativeSampler(user, item, data.n_users, data.n_items)
        # users who saw the whole catalogue have no negative: no ranking signal to learn from
        keep = self.neg.has_negative(user) & (weight > 0)
        self.user, self.item = user[keep], item[keep]
        if self.user.numel() == 0:
            raise ValueError("no training edge has a negative item to contrast with")
        self.pos = PositiveSampler(weight[keep])
        # item popularity (weighted degree) for the log-Q correction of in-batch negatives
        pop = torch.zeros(data.n_items, dtype=torch.float64, device=device)
        pop.index_add_(0, self.item, weight[keep].double())
        self.log_pop = torch.log(pop / pop.sum()).float()

    @property
    def n_edges(self) -> int:
        return int(self.user.numel())


@dataclass
class TrainingGraph:
    """What a training phase trains on: interactions, their adjacency and samplers."""

    data: InteractionData
    adj: NormalizedAdjacency
    batches: TrainingEdges
    nsampler: NeighborSampler | None
    teacher: Teacher | None = None
    """Distillation: the filter's top unseen items per user, and how one is drawn."""

    @classmethod
    def build(
        cls, data: InteractionData, cfg: TrainConfig, mode: str, device: torch.device
    ) -> TrainingGraph:
        adj = adjacency_for(data, cfg).to(device)
        nsampler = NeighborSampler.from_csr(adj.matrix) if mode == "sampled" else None
        teacher = None
        if cfg.distill_weight > 0 and (mode != "full" or cfg.loss != "bpr"):
            log.warning(
                "distill_weight is ignored with %s mode and loss %s (full-graph BPR only)",
                mode,
                cfg.loss,
            )
        elif cfg.distill_weight > 0:
            top, valid = teacher_top(data, cfg.distill_top, cfg.distill_low_pass, cfg.progress)
            teacher = Teacher(top, valid, cfg.distill_rank_decay).to(device)
        return cls(data, adj, TrainingEdges(data, device), nsampler, teacher)
