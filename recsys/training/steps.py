"""One training step: the embeddings of a batch's rows and the loss over them.

A step draws negatives for its positive edges (BPR: per positive, each the hardest of
a few uniform draws; softmax: a set shared by the batch), computes the final and
layer-0 embeddings of every row it needs (one full-graph propagation, or a
neighbour-sampled subgraph), and scores them with the configured ranking loss
(:mod:`recsys.training.losses`) plus L2, cold-start and contrastive terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.models.lightgcn import FeatureLightGCN
from recsys.training import losses
from recsys.training.config import TrainConfig
from recsys.training.training_graph import TrainingEdges, TrainingGraph


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
    et: Tensor | None = None
    """Distillation: the final embeddings ``[B, d]`` of each row's soft positive."""
    t_valid: Tensor | None = None
    """Distillation: ``[B]``, False where the row's user has no teacher item."""


def _draw_negatives(
    batches: TrainingEdges,
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
    out = StepRows(u, p, neg, eu, ep, en.view(shape), e0u, e0p, e0n.view(shape))
    if graph.teacher is not None:
        t, out.t_valid = graph.teacher.draw(u, gen)
        out.et = _rows(nodes, t + nu)
    return out


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


def _mean_sq_norm(x: Tensor) -> Tensor:
    """The mean over the rows of ``x`` ``[..., d]`` of their squared norms, as one dot product.

    Not ``x.square().sum(-1).mean()``: its backward goes through a generic ``pow`` kernel,
    twice as slow on CPU as the dot product's two multiplications (the L2 term of a
    Gowalla step: benchmarks/RESULTS.md).
    """
    v = x.reshape(-1)
    return torch.dot(v, v) / max(v.numel() // x.shape[-1], 1)


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
    reg = 0.5 * (_mean_sq_norm(rows.e0u) + _mean_sq_norm(rows.e0p) + _mean_sq_norm(rows.e0n))
    loss = rank + cfg.l2 * reg
    parts: dict[str, float] = {str(cfg.loss): float(rank.detach())}
    if rows.et is not None and rows.t_valid is not None and cfg.distill_weight > 0:
        pos_t, neg_t = losses.scores(rows.eu, rows.et, rows.en)
        per = torch.nn.functional.softplus(neg_t - pos_t.unsqueeze(-1)).mean(-1)
        keep = rows.t_valid.to(per.dtype)
        dl = (per * keep).sum() / keep.sum().clamp(min=1)
        loss = loss + cfg.distill_weight * dl
        parts["distill"] = float(dl.detach())
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
