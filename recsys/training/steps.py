"""One training step: the embeddings of a batch's rows and the loss over them.

A step draws negatives for its positive edges (BPR: per positive, each the hardest of
a few uniform draws; softmax: a set shared by the batch), computes the final and
layer-0 embedding tables (one full-graph propagation, or a neighbour-sampled subgraph),
locates the rows it needs in them (:class:`~recsys.training.table_rows.TableRows`) and
scores them with the configured ranking loss (:mod:`recsys.training.losses`) plus L2,
cold-start and contrastive terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recsys.models.lightgcn import FeatureLightGCN
from recsys.training import losses
from recsys.training.config import TrainConfig
from recsys.training.sampling import NegativeSampler
from recsys.training.table_rows import TableRows, gather_rows
from recsys.training.training_graph import TrainingEdges, TrainingGraph

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
        rows = gather_rows(items, cand[s : s + HARD_SCORE_ROWS])  # [r, n*m, d]
        scores[s : s + HARD_SCORE_ROWS] = torch.bmm(
            rows, user_emb[s : s + HARD_SCORE_ROWS].unsqueeze(2)
        ).squeeze(2)
    pick = scores.view(b, n, m).argmax(-1, keepdim=True)
    return cand.view(b, n, m).gather(2, pick).squeeze(2)


HARD_POOL_ROWS = 1024


@torch.no_grad()
def pooled_hardest_negatives(
    user_emb: Tensor,
    items: Tensor,
    users: Tensor,
    sampler: NegativeSampler,
    n: int,
    m: int,
    pool: int,
    gen: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Per row, ``n`` negatives, each the highest-scored of ``m`` uniform non-positives: ``[B, n]``.

    The same draw as :func:`hardest_candidates` over ``sampler.sample(users, n*m)``, made
    cheap: every block of ``HARD_POOL_ROWS`` rows shares one pool of ``pool`` independent
    uniform items (at least ``n*m``), so the block's scores are one matrix product
    ``[R, d] x [d, pool]`` instead of ``R * n * m`` gathered rows. A row's candidates are
    ``n*m`` consecutive (cyclic) positions of the pool from a random start: distinct
    positions of independent draws, so they are ``n*m`` independent uniform items, as in
    the per-row draw; only rows of one block are correlated. A candidate that is a
    positive of the row's user scores ``-inf``; a slot whose ``m`` candidates are all
    positives takes one exact non-positive draw.

    ``user_emb`` ``[B, d]``, ``items`` ``[I, d]``, ``users`` ``[B]`` (the rows' user ids).
    """
    b, n_items = users.numel(), items.shape[0]
    pool = max(pool, n * m)
    window = torch.arange(n * m, device=users.device)
    items, user_emb = items.to(dtype), user_emb.to(dtype)
    out = torch.empty((b, n), dtype=torch.long, device=users.device)
    for s in range(0, b, HARD_POOL_ROWS):
        u = users[s : s + HARD_POOL_ROWS].long()
        r = u.numel()
        pool_items = torch.randint(n_items, (pool,), generator=gen, device=users.device)
        scores = user_emb[s : s + r] @ items.index_select(0, pool_items).T  # [r, pool]
        start = torch.randint(pool, (r, 1), generator=gen, device=users.device)
        slot = (start + window) % pool
        cand = pool_items[slot].view(r, n, m)
        picked = scores.gather(1, slot).float().view(r, n, m)
        neg = cand.gather(2, picked.argmax(-1, keepdim=True)).squeeze(2)
        # only a slot whose pick is a positive of the user needs its candidates checked
        hit = sampler.is_positive(u.unsqueeze(1).expand(-1, n), neg)
        if bool(hit.any()):
            hu, hs = hit.nonzero(as_tuple=True)
            c, sc = cand[hu, hs], picked[hu, hs]  # [h, m]
            sc[sampler.is_positive(u[hu].unsqueeze(1).expand(-1, m), c)] = -torch.inf
            best, pick = sc.max(-1, keepdim=True)
            fixed = c.gather(1, pick).squeeze(1)
            stuck = best.squeeze(1) == -torch.inf
            if bool(stuck.any()):
                fixed[stuck] = sampler.sample(u[hu[stuck]], 1, gen).squeeze(1)
            neg[hu, hs] = fixed
        out[s : s + r] = neg
    return out


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
    pool: int = 0
    """BPR with ``candidates > 1``: the shared pool of :func:`pooled_hardest_negatives`
    (full-graph mode; 0: every row's own candidates)."""

    @classmethod
    def of(cls, cfg: TrainConfig, n_items: int) -> NegativePlan:
        if cfg.loss == "softmax":
            return cls(
                True, cfg.softmax_negatives, 1, cfg.softmax_sampler == "in_batch", torch.float32
            )
        m = max(1, min(cfg.hard_negative_candidates, n_items // cfg.items_per_hard_candidate))
        precision = getattr(torch, cfg.hard_negative_precision)
        return cls(False, cfg.negatives, m, False, precision, cfg.hard_negative_pool)


@dataclass
class StepRows:
    """The rows one step's loss needs, as positions in the final and layer-0 tables.

    ``u``, ``p`` ``[B]``; ``neg`` item ids ``[B, n]`` (per positive) or ``[M]``
    (shared); ``final`` and ``layer0`` the positions of the users, positives and
    negatives in the final-embedding and layer-0 tables.
    """

    u: Tensor
    p: Tensor
    neg: Tensor
    final: TableRows
    layer0: TableRows
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
    x0 = model.all_layer0()  # [U+I, d]
    nodes = model.smooth(x0, graph.adj)
    hard = not plan.shared and plan.candidates > 1
    # hard negatives are scored without autograd; only the chosen ones enter the graph
    # (same loss and gradients, far less backward work than gathering them all)
    frozen = nodes.detach()
    if hard and plan.pool > 0:
        neg = pooled_hardest_negatives(
            gather_rows(frozen, u),
            frozen[nu:],
            u,
            graph.batches.neg,
            plan.count,
            plan.candidates,
            plan.pool,
            gen,
            plan.precision,
        )
    else:
        neg = _draw_negatives(graph.batches, plan, u, p, graph.data.n_items, gen)
        if hard:
            neg = hardest_candidates(
                gather_rows(frozen, u),
                frozen[nu:],
                neg,
                plan.count,
                plan.candidates,
                plan.precision,
            )
    if plan.shared and plan.in_batch:
        # the negatives are the batch's first positives
        ineg = p[: neg.numel()] + nu
        return StepRows(
            u, p, neg, TableRows(nodes, u, p + nu, ineg), TableRows(x0, u, p + nu, ineg)
        )
    out = StepRows(
        u, p, neg, TableRows(nodes, u, p + nu, neg + nu), TableRows(x0, u, p + nu, neg + nu)
    )
    if graph.teacher is not None:
        t, out.t_valid = graph.teacher.draw(u, gen)
        out.et = gather_rows(nodes, t + nu)
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
    b = u.numel()
    iu, ip, icand = torch.split(sub.seed_index, [b, b, flat.numel()])
    if plan.shared:
        return StepRows(u, p, cand, TableRows(final, iu, ip, icand), TableRows(x0, iu, ip, icand))
    n, m = plan.count, plan.candidates
    if m > 1:
        # the candidates' rows of this subgraph, chosen by position
        frozen = final.detach()
        slots = icand.view(b, n * m)
        ineg = hardest_candidates(gather_rows(frozen, iu), frozen, slots, n, m, plan.precision)
        neg = sub.nodes[ineg] - nu
        return StepRows(u, p, neg, TableRows(final, iu, ip, ineg), TableRows(x0, iu, ip, ineg))
    ineg = icand.view(b, n)
    return StepRows(u, p, cand, TableRows(final, iu, ip, ineg), TableRows(x0, iu, ip, ineg))


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

    The L2 term is ``l2 * 0.5 * (mean_b |e0_u|^2 + mean_b |e0_p|^2 + mean_neg |e0_n|^2)``
    (:meth:`TableRows.l2`). BPR on its own is taken on the table's rows in place
    (:meth:`TableRows.bpr`); every other combination gathers the rows once.
    """
    mask = log_q = None
    if cfg.loss == "softmax":
        mask = rows.p.unsqueeze(1) != rows.neg.unsqueeze(0)  # a row's own positive is no negative
        if cfg.logq_correction and cfg.softmax_sampler == "in_batch":
            log_q = log_pop[rows.neg]
    distill = rows.et is not None and rows.t_valid is not None and cfg.distill_weight > 0
    features = cfg.feature_loss_weight > 0 and (
        model.user_features is not None or model.item_features is not None
    )
    if cfg.loss == "bpr" and not (distill or features or cfg.contrastive_weight > 0):
        rank = rows.final.bpr()
        return rank + cfg.l2 * rows.layer0.l2(), {"bpr": float(rank.detach())}, None
    eu, ep, en = rows.final.gather()
    rank = ranking_loss(cfg, eu, ep, en, mask, log_q, temperature)
    reg = rows.layer0.l2()
    loss = rank + cfg.l2 * reg
    parts: dict[str, float] = {str(cfg.loss): float(rank.detach())}
    if distill and rows.et is not None and rows.t_valid is not None:
        pos_t, neg_t = losses.scores(eu, rows.et, en)
        per = torch.nn.functional.softplus(neg_t - pos_t.unsqueeze(-1)).mean(-1)
        keep = rows.t_valid.to(per.dtype)
        dl = (per * keep).sum() / keep.sum().clamp(min=1)
        loss = loss + cfg.distill_weight * dl
        parts["distill"] = float(dl.detach())
    if cfg.contrastive_weight > 0:
        c = cfg.contrastive_rows
        x0, iu, ip = rows.layer0.x, rows.layer0.iu[:c], rows.layer0.ip[:c]
        cl = losses.info_nce(eu[:c], gather_rows(x0, iu), cfg.contrastive_temperature)
        cl = cl + losses.info_nce(ep[:c], gather_rows(x0, ip), cfg.contrastive_temperature)
        loss = loss + cfg.contrastive_weight * cl
        parts["contrastive"] = float(cl.detach())
    per_row = None
    if cfg.loss == "softmax" and cfg.temperature_mode == "adaptive":
        with torch.no_grad():
            a, b_, c_ = eu.detach(), ep.detach(), en.detach()
            if cfg.cosine:
                a, b_, c_ = (torch.nn.functional.normalize(x, dim=-1) for x in (a, b_, c_))
            pos, neg = losses.scores(a, b_, c_)
            per_row = losses.softmax(pos, neg, cfg.temperature, mask, log_q, reduce=False)
    if cfg.feature_loss_weight > 0 and model.user_features is not None:
        cu = model.project_user_features(model.user_features[rows.u])
        cold_u = ranking_loss(cfg, cu, ep, en, mask, log_q)
        loss = loss + cfg.feature_loss_weight * cold_u
        parts[f"cold_user_{cfg.loss}"] = float(cold_u.detach())
    if cfg.feature_loss_weight > 0 and model.item_features is not None:
        cp = model.project_item_features(model.item_features[rows.p])
        cn = model.project_item_features(model.item_features[rows.neg])
        cold_i = ranking_loss(cfg, eu, cp, cn, mask, log_q)
        loss = loss + cfg.feature_loss_weight * cold_i
        parts[f"cold_item_{cfg.loss}"] = float(cold_i.detach())
    return loss, parts, per_row
