"""The training loop: BPR or sampled softmax over a FeatureLightGCN.

One step: draw a batch of positive edges (by weight) and negatives, compute
embeddings (one full-graph propagation, or a neighbour-sampled subgraph for
graphs too large), and minimise (losses in :mod:`recsys.training.losses`)::

    loss = ranking(e_u, e_p, e_neg) + l2 * mean_rows 0.5 * |e0|^2 [+ cold-start terms]
           [+ contrastive_weight * InfoNCE(final, layer 0)]

- ``loss="bpr"``: ``negatives`` per positive, each the hardest of
  ``hard_negative_candidates`` uniform draws;
- ``loss="softmax"``: ``softmax_negatives`` items shared by the batch (its own
  positives, or uniform draws), temperature ``temperature`` (fixed or per user).

When nodes have features, the same ranking loss on the features-only layer 0
of the batch's users and items (what a new user or product gets) trains the
cold path. Validation (carved from the training data, never the test set)
picks the best epoch and stops early; optionally the last epochs then train on
the validation pairs too (``fold_validation_epochs``).

The stages, each a function below: :func:`init_state` / :func:`restore_state`
/ :func:`save_state` (model, optimiser, generators, best checkpoint),
:func:`full_graph_rows` and :func:`sampled_rows` (the embeddings of one step),
:func:`objective` (the loss of those rows), :func:`train_epoch`, and
:func:`validate`; :func:`train` runs them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency, normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training import losses
from recsys.training.blend import BlendChoice, blended, choose_blend
from recsys.training.checkpoint import load_checkpoint, save_checkpoint
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.ddp import Distributed
from recsys.training.evaluator import RankingEvaluator
from recsys.training.init import spectral_embeddings
from recsys.training.sampling import NegativeSampler, NeighborSampler, PositiveSampler
from recsys.training.tracking import Tracker
from recsys.training.warm import WarmStart

log = get_logger(__name__)

OnEval = Callable[[int, FeatureLightGCN], dict[str, float]]
"""Called at each validation with ``(epoch, model)``; its metrics join the history
(benchmarks use it to watch the test set; it never influences training)."""


@dataclass
class TrainResult:
    """The best model (by validation, in eval mode) and how training went."""

    model: FeatureLightGCN
    history: list[dict[str, float]]
    best_epoch: int
    best_val: dict[str, float]
    epochs_run: int
    train_seconds: float
    mode: str
    stopped_early: bool
    val_pairs: int
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(data: InteractionData, cfg: TrainConfig) -> FeatureLightGCN:
    """A freshly initialised model for ``data``, seeded by ``cfg.seed``.

    Nodes without any training interaction get a zero id embedding: they have
    no id signal to learn, so their layer 0 is their features alone, exactly
    what serving computes for a new user or product.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = FeatureLightGCN(
            data.n_users,
            data.n_items,
            embedding_dim=cfg.embedding_dim,
            num_layers=cfg.num_layers,
            user_features=None
            if data.user_features is None
            else torch.from_numpy(np.ascontiguousarray(data.user_features)),
            item_features=None
            if data.item_features is None
            else torch.from_numpy(np.ascontiguousarray(data.item_features)),
            init_std=cfg.init_std,
        )
    with torch.no_grad():
        if cfg.init == "spectral" and data.n_interactions > 0:
            eu, ei = spectral_embeddings(
                data.train_user,
                data.train_item,
                data.train_weight,
                data.n_users,
                data.n_items,
                cfg.embedding_dim,
                cfg.init_std,
                cfg.seed,
            )
            model.user_embedding.weight.copy_(torch.from_numpy(eu))
            model.item_embedding.weight.copy_(torch.from_numpy(ei))
        seen_u = np.bincount(data.train_user, minlength=data.n_users) > 0
        seen_i = np.bincount(data.train_item, minlength=data.n_items) > 0
        model.user_embedding.weight[torch.from_numpy(~seen_u)] = 0.0
        model.item_embedding.weight[torch.from_numpy(~seen_i)] = 0.0
    return model


def adjacency_for(data: InteractionData, cfg: TrainConfig) -> NormalizedAdjacency:
    return normalized_adjacency(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items, cfg.norm
    )


def lr_factor(cfg: TrainConfig, epoch: int, elapsed: float = 0.0) -> float:
    """Learning-rate multiplier for 0-based ``epoch`` starting ``elapsed`` seconds into training.

    With a time budget (``max_train_seconds``) the cosine runs over whichever of the epochs
    and the budget is further along, so a time-matched run ends its schedule in time.
    """
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / cfg.warmup_epochs
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    t = min(max(epoch - cfg.warmup_epochs, 0) / span, 1.0)
    if cfg.max_train_seconds is not None:
        t = max(t, min(elapsed / cfg.max_train_seconds, 1.0))
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def resolve_mode(cfg: TrainConfig, n_edges: int) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    return "full" if n_edges <= cfg.full_graph_max_edges else "sampled"


class _Batches:
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
    batches: _Batches
    nsampler: NeighborSampler | None

    @classmethod
    def build(
        cls, data: InteractionData, cfg: TrainConfig, mode: str, device: torch.device
    ) -> TrainingGraph:
        adj = adjacency_for(data, cfg).to(device)
        nsampler = NeighborSampler.from_csr(adj.matrix) if mode == "sampled" else None
        return cls(data, adj, _Batches(data, device), nsampler)


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a 2-D ``x`` and any-shaped ``index``: ``[*index.shape, d]``.

    Not ``x[index]``: the backward of advanced indexing on CPU is
    ``index_put_(accumulate=True)``, which accumulates rows hit more than once
    (a popular item in a batch) with parallel atomic adds, so the summation
    order, and the weights' last bits, change from run to run whenever torch
    uses several threads. ``index_select``'s backward (``index_add_``) adds in
    a fixed order on CPU, at no measurable cost.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, x.shape[-1])


HARD_SCORE_ROWS = 256


@torch.no_grad()
def hardest_candidates(
    user_emb: Tensor,
    items: Tensor,
    cand: Tensor,
    n: int,
    m: int,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Per negative slot, the candidate item the model scores highest: ``[B, n*m] -> [B, n]``.

    ``items`` ``[I, d]``, ``cand`` ``[B, n*m]`` row indices into it, slot ``j``'s
    candidates being ``cand[:, j*m:(j+1)*m]``. Never materialises the
    ``[B, n*m, d]`` candidate tensor: rows are gathered and scored
    ``HARD_SCORE_ROWS`` positives at a time, so the gathered block stays in
    cache (4x faster on CPU at ``B=16384, n*m=32``; benchmarks/RESULTS.md).
    ``dtype`` is the precision of the scoring: ``bfloat16`` halves the bytes
    gathered and picks the same candidate but for near ties (99% of slots).
    """
    b = cand.shape[0]
    items = items.to(dtype)
    user_emb = user_emb.to(dtype)
    scores = torch.empty(cand.shape, dtype=dtype, device=items.device)
    for s in range(0, b, HARD_SCORE_ROWS):
        rows = _rows(items, cand[s : s + HARD_SCORE_ROWS])  # [r, n*m, d]
        scores[s : s + HARD_SCORE_ROWS] = torch.bmm(
            rows, user_emb[s : s + HARD_SCORE_ROWS].unsqueeze(2)
        ).squeeze(2)
    pick = scores.view(b, n, m).argmax(-1, keepdim=True)
    return cand.view(b, n, m).gather(2, pick).squeeze(2)


# ---------------------------------------------------------------- one step's rows


@dataclass
class NegativePlan:
    """How a step draws its negatives (resolved once from the config and the graph)."""

    shared: bool
    """Softmax: ``count`` negatives shared by the batch; BPR: ``count`` per positive."""
    count: int
    candidates: int
    """BPR: each negative is the hardest of this many uniform draws (1: uniform)."""
    in_batch: bool
    precision: torch.dtype

    @classmethod
    def of(cls, cfg: TrainConfig, n_items: int) -> NegativePlan:
        if cfg.loss == "softmax":
            return cls(
                True, cfg.softmax_negatives, 1, cfg.softmax_sampler == "in_batch", torch.float32
            )
        m = max(1, min(cfg.hard_negative_candidates, n_items // cfg.items_per_hard_candidate))
        return cls(False, cfg.negatives, m, False, getattr(torch, cfg.hard_negative_precision))


@dataclass
class StepRows:
    """The embeddings one step's loss needs.

    ``u``, ``p`` ``[B]``; ``neg`` item ids ``[B, n]`` (per positive) or ``[M]``
    (shared); ``eu``, ``ep`` ``[B, d]`` and ``en`` ``[B, n, d]`` or ``[M, d]``
    final embeddings; ``e0u``, ``e0p``, ``e0n`` the same rows at layer 0.
    """

    u: Tensor
    p: Tensor
    neg: Tensor
    eu: Tensor
    ep: Tensor
    en: Tensor
    e0u: Tensor
    e0p: Tensor
    e0n: Tensor


def _draw_negatives(
    batches: _Batches,
    plan: NegativePlan,
    u: Tensor,
    p: Tensor,
    n_items: int,
    gen: torch.Generator,
) -> Tensor:
    """BPR: ``[B, n*m]`` candidates (non-positives of each row's user); softmax: ``[M]`` items
    (``in_batch``: the first ``M`` positives of the batch, whose rows are gathered anyway)."""
    if not plan.shared:
        return batches.neg.sample(u, plan.count * plan.candidates, gen)
    if plan.in_batch:
        return p[: plan.count]
    return torch.randint(n_items, (plan.count,), generator=gen, device=u.device)


def full_graph_rows(
    model: FeatureLightGCN,
    graph: TrainingGraph,
    plan: NegativePlan,
    u: Tensor,
    p: Tensor,
    gen: torch.Generator,
) -> StepRows:
    """One exact propagation over the whole graph, then the batch's rows."""
    nu = graph.data.n_users
    cand = _draw_negatives(graph.batches, plan, u, p, graph.data.n_items, gen)
    x0 = model.all_layer0()  # [U+I, d]
    nodes = model.smooth(x0, graph.adj)
    if not plan.shared and plan.candidates > 1:
        # score all n*m candidates without autograd; only the chosen negatives enter the
        # graph (same loss and gradients, far less backward work than gathering them all)
        frozen = nodes.detach()
        neg = hardest_candidates(
            _rows(frozen, u), frozen[nu:], cand, plan.count, plan.candidates, plan.precision
        )
    else:
        neg = cand
    b = u.numel()
    if plan.shared and plan.in_batch:
        # the negatives are the first positives: their rows are already among the gathered ones
        rows = torch.cat([u, p + nu])
        eu, ep = torch.split(_rows(nodes, rows), [b, b])
        e0u, e0p = torch.split(_rows(x0, rows), [b, b])
        m = neg.numel()
        return StepRows(u, p, neg, eu, ep, ep[:m], e0u, e0p, e0p[:m])
    # users, positives and negatives in one gather from the final and one from the layer-0
    # table: one scatter each in the backward
    flat = neg.reshape(-1)
    rows = torch.cat([u, p + nu, flat + nu])
    eu, ep, en = torch.split(_rows(nodes, rows), [b, b, flat.numel()])
    e0u, e0p, e0n = torch.split(_rows(x0, rows), [b, b, flat.numel()])
    shape = (*neg.shape, -1)
    return StepRows(u, p, neg, eu, ep, en.view(shape), e0u, e0p, e0n.view(shape))


def sampled_rows(
    model: FeatureLightGCN,
    graph: TrainingGraph,
    plan: NegativePlan,
    u: Tensor,
    p: Tensor,
    fanouts: list[int],
    gen: torch.Generator,
) -> StepRows:
    """Propagation over a neighbour-sampled subgraph around the batch's nodes, then its rows."""
    assert graph.nsampler is not None
    nu = graph.data.n_users
    cand = _draw_negatives(graph.batches, plan, u, p, graph.data.n_items, gen)
    flat = cand.reshape(-1)
    seeds = torch.cat([u, p + nu, flat + nu])
    sub = graph.nsampler.sample(seeds, fanouts, gen)
    x0 = model.node_layer0(sub.nodes)
    final = model.readout(model.propagate(x0, sub.matrix, sub.transpose))
    emb = _rows(final, sub.seed_index)
    emb0 = _rows(x0, sub.seed_index)
    b = u.numel()
    eu, ep, ecand = torch.split(emb, [b, b, flat.numel()])
    e0u, e0p, e0cand = torch.split(emb0, [b, b, flat.numel()])
    if plan.shared:
        return StepRows(u, p, cand, eu, ep, ecand, e0u, e0p, e0cand)
    n, m = plan.count, plan.candidates
    if m > 1:
        # the candidates' rows of this subgraph, chosen by position
        slots = torch.arange(b * n * m, device=u.device).view(b, n * m)
        pick = hardest_candidates(eu.detach(), ecand.detach(), slots, n, m, plan.precision)
        return StepRows(u, p, flat[pick], eu, ep, _rows(ecand, pick), e0u, e0p, _rows(e0cand, pick))
    return StepRows(u, p, cand, eu, ep, ecand.view(b, n, -1), e0u, e0p, e0cand.view(b, n, -1))


# ---------------------------------------------------------------- the loss


def ranking_loss(
    cfg: TrainConfig,
    eu: Tensor,
    ep: Tensor,
    en: Tensor,
    neg_mask: Tensor | None = None,
    log_q: Tensor | None = None,
    temperature: float | Tensor | None = None,
) -> Tensor:
    """The configured ranking loss of user rows ``eu`` against ``ep`` and the negatives ``en``."""
    if cfg.loss == "bpr":
        return losses.bpr(*losses.scores(eu, ep, en))
    if cfg.cosine:
        eu, ep, en = (torch.nn.functional.normalize(x, dim=-1) for x in (eu, ep, en))
    pos, neg = losses.scores(eu, ep, en)
    tau = cfg.temperature if temperature is None else temperature
    return losses.softmax(pos, neg, tau, neg_mask, log_q)


def objective(
    model: FeatureLightGCN,
    cfg: TrainConfig,
    rows: StepRows,
    log_pop: Tensor,
    temperature: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, float], Tensor | None]:
    """Total loss of a step, its parts, and (softmax) the per-row loss at the base temperature.

    The L2 term is ``l2 * 0.5 * (mean_b |e0_u|^2 + mean_b |e0_p|^2 + mean_neg |e0_n|^2)``.
    """
    mask = log_q = None
    if cfg.loss == "softmax":
        mask = rows.p.unsqueeze(1) != rows.neg.unsqueeze(0)  # a row's own positive is no negative
        if cfg.logq_correction and cfg.softmax_sampler == "in_batch":
            log_q = log_pop[rows.neg]
    rank = ranking_loss(cfg, rows.eu, rows.ep, rows.en, mask, log_q, temperature)
    reg = 0.5 * (
        rows.e0u.square().sum(-1).mean()
        + rows.e0p.square().sum(-1).mean()
        + rows.e0n.square().sum(-1).mean()
    )
    loss = rank + cfg.l2 * reg
    parts: dict[str, float] = {str(cfg.loss): float(rank.detach())}
    if cfg.contrastive_weight > 0:
        c = cfg.contrastive_rows
        cl = losses.info_nce(rows.eu[:c], rows.e0u[:c], cfg.contrastive_temperature)
        cl = cl + losses.info_nce(rows.ep[:c], rows.e0p[:c], cfg.contrastive_temperature)
        loss = loss + cfg.contrastive_weight * cl
        parts["contrastive"] = float(cl.detach())
    per_row = None
    if cfg.loss == "softmax" and cfg.temperature_mode == "adaptive":
        with torch.no_grad():
            a, b_, c_ = rows.eu.detach(), rows.ep.detach(), rows.en.detach()
            if cfg.cosine:
                a, b_, c_ = (torch.nn.functional.normalize(x, dim=-1) for x in (a, b_, c_))
            pos, neg = losses.scores(a, b_, c_)
            per_row = losses.softmax(pos, neg, cfg.temperature, mask, log_q, reduce=False)
    if cfg.feature_loss_weight > 0 and model.user_features is not None:
        cu = model.project_user_features(model.user_features[rows.u])
        cold_u = ranking_loss(cfg, cu, rows.ep, rows.en, mask, log_q)
        loss = loss + cfg.feature_loss_weight * cold_u
        parts[f"cold_user_{cfg.loss}"] = float(cold_u.detach())
    if cfg.feature_loss_weight > 0 and model.item_features is not None:
        cp = model.project_item_features(model.item_features[rows.p])
        cn = model.project_item_features(model.item_features[rows.neg])
        cold_i = ranking_loss(cfg, rows.eu, cp, cn, mask, log_q)
        loss = loss + cfg.feature_loss_weight * cold_i
        parts[f"cold_item_{cfg.loss}"] = float(cold_i.detach())
    return loss, parts, per_row


# ---------------------------------------------------------------- state and checkpoints


@dataclass
class TrainState:
    """Everything a resumed run needs: model, optimiser, generator, progress, best checkpoint."""

    model: FeatureLightGCN
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, Tensor] | None = None
    bad_evals: int = 0
    elapsed_before: float = 0.0
    folded: bool = False
    """The validation pairs have joined training (``fold_validation_epochs``)."""
    user_temperature: Tensor | None = None
    """Adaptive temperatures ``[U]`` for the next epoch (``None``: the fixed one)."""
    blend: BlendChoice | None = None
    """The blend weight chosen on validation at the fold (``blend_rank`` with a fold)."""

    def snapshot_best(self, score: float, epoch: int) -> None:
        self.best_score, self.best_epoch, self.bad_evals = score, epoch, 0
        self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def init_state(
    data: InteractionData, cfg: TrainConfig, device: torch.device, warm: WarmStart | None = None
) -> TrainState:
    model = build_model(data, cfg)
    if warm is not None and warm.applied:
        unknown = model.load_state_dict(warm.state, strict=False).unexpected_keys
        if unknown:
            raise ValueError(f"warm start parameters unknown to the model: {sorted(unknown)}")
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    return TrainState(model, optimizer, gen)


def restore_state(state: TrainState, folder: str, cfg_json: str, device: torch.device) -> bool:
    """Continue from the checkpoint in ``folder`` if there is one; whether there was."""
    ck = load_checkpoint(folder, map_location=device)
    if ck is None:
        return False
    if ck.get("config") != cfg_json:
        log.warning("resuming %s with a different config than it was started with", folder)
    state.model.load_state_dict(ck["model"])
    state.optimizer.load_state_dict(ck["optimizer"])
    state.gen.set_state(ck["generator"].cpu())  # generator states are CPU byte tensors
    state.epoch = int(ck["epoch"])
    state.history = list(ck["history"])
    state.best_score = float(ck["best_score"])
    state.best_epoch = int(ck["best_epoch"])
    state.best_state = ck["best_state"] or None
    state.bad_evals = int(ck["bad_evals"])
    state.elapsed_before = float(ck.get("elapsed", 0.0))
    state.folded = bool(ck.get("folded", False))
    temp = ck.get("user_temperature")
    state.user_temperature = None if temp is None or temp.numel() == 0 else temp.to(device)
    blend = ck.get("blend") or {}
    if blend:
        state.blend = BlendChoice(
            float(blend["weight"]), {float(w): float(v) for w, v in blend["scores"].items()}
        )
    log.info("resumed from %s at epoch %d", folder, state.epoch)
    return True


def save_state(state: TrainState, folder: str, cfg_json: str, elapsed: float) -> None:
    save_checkpoint(
        folder,
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "generator": state.gen.get_state(),
            "epoch": state.epoch,
            "history": state.history,
            "best_score": state.best_score,
            "best_epoch": state.best_epoch,
            "best_state": state.best_state or {},
            "bad_evals": state.bad_evals,
            "elapsed": elapsed,
            "config": cfg_json,
            "folded": state.folded,
            "user_temperature": torch.zeros(0)
            if state.user_temperature is None
            else state.user_temperature,
            "blend": {}
            if state.blend is None
            else {
                "weight": state.blend.weight,
                "scores": {str(w): v for w, v in state.blend.scores.items()},
            },
        },
    )


# ---------------------------------------------------------------- epochs and validation


@dataclass
class EpochPlan:
    """What every epoch of a run shares."""

    cfg: TrainConfig
    mode: str
    negatives: NegativePlan
    batch_size: int
    fanouts: list[int]
    ctx: Distributed
    device: torch.device
    neg_gen: torch.Generator
    elapsed: Callable[[], float]
    """Training seconds so far (validation included, test monitoring excluded)."""


def train_epoch(state: TrainState, graph: TrainingGraph, plan: EpochPlan) -> dict[str, float]:
    """One pass over the training edges; returns the epoch's mean loss and its parts."""
    cfg, ctx, model, optimizer = plan.cfg, plan.ctx, state.model, state.optimizer
    epoch = state.epoch
    model.train()
    for g in optimizer.param_groups:
        # (under DDP the ranks' clocks differ: the schedule follows the epochs alone there)
        g["lr"] = cfg.lr * lr_factor(cfg, epoch, 0.0 if ctx.enabled else plan.elapsed())
    batches = graph.batches
    order = batches.pos.epoch(state.gen)
    neg_gen = plan.neg_gen
    if ctx.enabled:
        # under DDP ``state.gen`` draws the epoch order, the same on every rank so that their
        # slices are disjoint; negatives and neighbour samples come from a generator of the
        # rank's own, reseeded from (seed, rank, epoch) so a resumed job draws what the
        # uninterrupted one would
        seq = np.random.SeedSequence([cfg.seed, ctx.rank, epoch])
        neg_gen.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    adaptive = cfg.loss == "softmax" and cfg.temperature_mode == "adaptive"
    n_users = graph.data.n_users
    if adaptive:
        loss_sum = torch.zeros(n_users, dtype=torch.float64, device=plan.device)
        loss_cnt = torch.zeros(n_users, dtype=torch.float64, device=plan.device)
    total, steps = 0.0, 0
    parts_sum: dict[str, float] = {}
    bs = plan.batch_size
    for s in range(0, order.numel(), bs):
        idx = order[s : s + bs]
        share = 1.0
        if ctx.enabled:
            batch_n = idx.numel()
            idx = idx.tensor_split(ctx.world_size)[ctx.rank]
            # this rank's part of the batch mean, so the averaged gradient is the batch's
            share = idx.numel() / batch_n
            if idx.numel() == 0:  # a last batch smaller than the world: still all-reduce
                optimizer.zero_grad(set_to_none=True)
                ctx.all_reduce_gradients(model.parameters())
                optimizer.step()
                steps += 1
                continue
        u, p = batches.user[idx], batches.item[idx]
        if plan.mode == "full":
            rows = full_graph_rows(model, graph, plan.negatives, u, p, neg_gen)
        else:
            rows = sampled_rows(model, graph, plan.negatives, u, p, plan.fanouts, neg_gen)
        temperature = None
        if state.user_temperature is not None:
            temperature = state.user_temperature[u]
        loss, parts, per_row = objective(model, cfg, rows, batches.log_pop, temperature)
        if adaptive and per_row is not None:
            loss_sum.index_add_(0, u, per_row.double())
            loss_cnt.index_add_(0, u, torch.ones_like(per_row, dtype=torch.float64))
        optimizer.zero_grad(set_to_none=True)
        if ctx.enabled:
            (loss * (share * ctx.world_size)).backward()  # type: ignore[no-untyped-call]
            ctx.all_reduce_gradients(model.parameters())
            total += float(loss.detach()) * share
            parts = {k: v * share for k, v in parts.items()}
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            total += float(loss.detach())
        optimizer.step()
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + v
        steps += 1
    if ctx.enabled:  # the batch losses, not this rank's slices'
        keys = sorted(parts_sum)
        summed = ctx.sum([total, *(parts_sum[k] for k in keys)], plan.device)
        total, parts_sum = summed[0], dict(zip(keys, summed[1:], strict=True))
    if adaptive:
        if ctx.enabled:
            loss_sum, loss_cnt = ctx.sum_tensor(loss_sum), ctx.sum_tensor(loss_cnt)
        mean = torch.where(loss_cnt > 0, loss_sum / loss_cnt.clamp(min=1), math.nan)
        temps = losses.adaptive_temperature(
            mean.cpu().numpy(), cfg.temperature, cfg.temperature_spread
        )
        state.user_temperature = torch.from_numpy(temps).float().to(plan.device)
    row: dict[str, float] = {
        "epoch": epoch + 1,
        "loss": total / max(steps, 1),
        "lr": optimizer.param_groups[0]["lr"],
    }
    row.update({k: v / max(steps, 1) for k, v in parts_sum.items()})
    if adaptive and state.user_temperature is not None:
        row["temperature_mean"] = float(state.user_temperature.mean())
    return row


def validate(
    model: FeatureLightGCN, adj: NormalizedAdjacency, evaluator: RankingEvaluator
) -> dict[str, float]:
    """Validation metrics of ``model`` propagating over the training graph ``adj``."""
    model.eval()
    with torch.no_grad():
        ue, ie = model(adj)
        return evaluator.evaluate(ue, ie)


# ---------------------------------------------------------------- the run


def train(
    data: InteractionData,
    cfg: TrainConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | None = None,
    resume: bool = True,
    tracker: Tracker | None = None,
    on_eval: OnEval | None = None,
    max_epochs: int | None = None,
    dist: Distributed | None = None,
    warm: WarmStart | None = None,
) -> TrainResult:
    """Train a :class:`FeatureLightGCN` on ``data``; see the module docstring.

    ``checkpoint_dir`` (a URI) receives a resumable checkpoint every
    ``cfg.checkpoint_every`` epochs; with ``resume`` an existing one there is
    continued. ``max_epochs`` stops this call early without changing the
    schedule (to test resumption).

    ``dist`` (from :func:`recsys.training.ddp.init_distributed`) makes this one
    rank of a data-parallel job: it trains on its slice of every batch and the
    gradients are averaged over the ranks; only rank 0 validates (and decides
    early stopping for all), keeps the best state and writes checkpoints.

    ``warm`` (:func:`recsys.training.warm.plan_warm_start`) starts from production's layer 0
    instead of a fresh initialisation; ``cfg`` is then the warm schedule.
    """
    cfg = cfg or TrainConfig()
    ctx = dist or Distributed()
    tracker = tracker or Tracker()
    dev = torch.device(device)
    threads = cfg.resolved_threads()
    if threads:
        torch.set_num_threads(threads)

    split = split_validation(data, cfg.val_fraction, cfg.seed)
    evaluator = RankingEvaluator(
        split.train.train_user,
        split.train.train_item,
        split.val_user,
        split.val_item,
        data.n_users,
        data.n_items,
        ks=(cfg.eval_k,),
        max_users=cfg.eval_max_users,
        seed=cfg.seed,
    )
    mode = resolve_mode(cfg, split.train.n_interactions)
    graph = TrainingGraph.build(split.train, cfg, mode, dev)
    state = init_state(split.train, cfg, dev, warm)
    cfg_json = cfg.model_dump_json()
    if checkpoint_dir and resume:
        restore_state(state, checkpoint_dir, cfg_json, dev)
    # the batch size follows the graph training starts on, also for a run resumed after a fold
    n_edges = graph.batches.n_edges
    if state.folded:
        graph = TrainingGraph.build(data, cfg, mode, dev)

    tracker.log_params(
        {
            "config": cfg.model_dump(),
            "mode": mode,
            "device": str(dev),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "train_edges": split.train.n_interactions,
            "val_pairs": int(split.val_user.size),
        }
    )
    log.info(
        "training %s: %d users, %d items, %d train edges, %d validation pairs, mode=%s, device=%s",
        f"K={cfg.num_layers} d={cfg.embedding_dim} loss={cfg.loss}",
        data.n_users,
        data.n_items,
        split.train.n_interactions,
        split.val_user.size,
        mode,
        dev,
    )
    t0 = time.perf_counter()
    monitor_seconds = 0.0

    def elapsed() -> float:
        return state.elapsed_before + time.perf_counter() - t0 - monitor_seconds

    bs = cfg.batch_size if mode == "full" else cfg.sampled_batch_size
    plan = EpochPlan(
        cfg=cfg,
        mode=mode,
        negatives=NegativePlan.of(cfg, data.n_items),
        batch_size=max(1, min(bs, math.ceil(n_edges / cfg.min_steps_per_epoch))),
        fanouts=[cfg.fanouts[min(k, len(cfg.fanouts) - 1)] for k in range(cfg.num_layers)],
        ctx=ctx,
        device=dev,
        neg_gen=torch.Generator(device=dev) if ctx.enabled else state.gen,
        elapsed=elapsed,
    )
    # the epoch after which the validation pairs join training (never, without folding)
    fold_at = cfg.epochs - cfg.fold_validation_epochs if cfg.fold_validation_epochs else -1
    can_validate = ctx.is_main and not evaluator.empty
    last_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    stopped_early = False

    bar = tqdm(
        range(state.epoch, last_epoch),
        desc="train",
        unit="epoch",
        disable=not (cfg.progress and ctx.is_main),
        initial=state.epoch,
        total=last_epoch,
    )
    first_epoch, started_at = state.epoch, elapsed()
    for epoch in bar:
        state.epoch = epoch
        row = train_epoch(state, graph, plan)
        state.epoch = epoch + 1
        # the schedule's end (not a max_epochs pause), or the time budget: stop when another
        # epoch (at this run's mean epoch time, validation included) would end past it
        out_of_time = cfg.max_train_seconds is not None and (
            elapsed() + (elapsed() - started_at) / (epoch + 1 - first_epoch) > cfg.max_train_seconds
        )
        out_of_time = ctx.broadcast_flag(out_of_time, dev)
        done = epoch + 1 == cfg.epochs or out_of_time
        at_fold = epoch + 1 == fold_at and not out_of_time
        due = (epoch + 1) % cfg.eval_every == 0 or done or at_fold
        if can_validate and due and not state.folded:
            val = validate(state.model, graph.adj, evaluator)
            row.update({f"val_{k}": v for k, v in val.items()})
            score = val.get(cfg.select_metric, -math.inf)
            if score > state.best_score:
                state.snapshot_best(score, epoch + 1)
            else:
                state.bad_evals += 1
            if state.bad_evals >= cfg.patience:
                stopped_early = True
        if can_validate and due:
            row["elapsed_s"] = elapsed()
            if on_eval is not None:
                tm = time.perf_counter()
                row.update(on_eval(epoch + 1, state.model))
                monitor_seconds += time.perf_counter() - tm
        if at_fold and not stopped_early:
            # fold only while still improving: the last validated checkpoint is the best one
            fold = evaluator.empty or state.best_epoch == epoch + 1
            fold = ctx.broadcast_flag(fold, dev)
            if fold and can_validate and cfg.blend_rank:
                # the last moment validation is clean: choose the blend weight now
                state.blend = choose_blend(state.model, split.train, graph.adj, evaluator, cfg)
            if fold:
                log.info(
                    "epoch %d: the validation pairs join training for the last %d epochs",
                    epoch + 1,
                    cfg.fold_validation_epochs,
                )
                state.folded = True
                graph = TrainingGraph.build(data, cfg, mode, dev)
            else:
                stopped_early = True
        if out_of_time and not stopped_early:
            log.info("time budget of %.0f s spent at epoch %d", cfg.max_train_seconds, epoch + 1)
            stopped_early = True
        stopped_early = ctx.broadcast_flag(stopped_early, dev)
        row.setdefault("elapsed_s", elapsed())
        state.history.append(row)
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
        bar.set_postfix(
            {k: f"{row[k]:.4f}" for k in ("loss", f"val_{cfg.select_metric}") if k in row}
        )
        log.debug("epoch %s", json.dumps(row))
        pause = epoch + 1 == last_epoch
        save = (epoch + 1) % cfg.checkpoint_every == 0 or pause or stopped_early
        if checkpoint_dir and ctx.is_main and save:
            save_state(state, checkpoint_dir, cfg_json, row["elapsed_s"])
        if stopped_early:
            log.info(
                "early stop at epoch %d: best %s=%.4f at epoch %d",
                epoch + 1,
                cfg.select_metric,
                state.best_score,
                state.best_epoch,
            )
            break
    bar.close()
    result = _result(state, cfg, mode, stopped_early, int(split.val_user.size))
    if cfg.blend_rank and can_validate:
        blend_choice = state.blend
        if blend_choice is None and not state.folded:
            blend_choice = choose_blend(result.model, split.train, graph.adj, evaluator, cfg)
        if blend_choice is not None:
            result.extra["blend_weight"] = blend_choice.weight
            result.extra["blend_validation"] = {str(w): v for w, v in blend_choice.scores.items()}
            if blend_choice.weight > 0:
                # the filter of the graph the model serves: every training pair (after a
                # fold, the graph it trained on last is that one already)
                served = graph.adj if state.folded else adjacency_for(data, cfg).to(dev)
                result.model = blended(result.model, data, served, cfg, blend_choice.weight)
    return result


def _result(
    state: TrainState, cfg: TrainConfig, mode: str, stopped_early: bool, val_pairs: int
) -> TrainResult:
    history = state.history
    epochs_run = int(history[-1]["epoch"]) if history else state.epoch
    model = state.model
    best_epoch = state.best_epoch
    val_epoch = best_epoch
    if state.folded:
        best_epoch = epochs_run  # the folded epochs' end: chosen when validation said go on
    elif state.best_state is None:
        best_epoch = val_epoch = epochs_run
    else:
        model.load_state_dict(state.best_state)
    model.eval()
    best_val = {
        k[4:]: v
        for r in history
        if r["epoch"] == val_epoch
        for k, v in r.items()
        if k.startswith("val_")
    }
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val=best_val,
        epochs_run=epochs_run,
        train_seconds=float(history[-1]["elapsed_s"]) if history else 0.0,
        mode=mode,
        stopped_early=stopped_early,
        val_pairs=val_pairs,
        extra={"folded_validation": state.folded},
    )
