"""The BPR training loop.

One step: draw a batch of positive edges (by weight), ``negatives`` negatives
per positive (optionally the hardest of ``hard_negative_candidates``), compute
embeddings (one full-graph propagation, or a neighbour-sampled subgraph for
graphs too large), and minimise::

    BPR = mean_{(u,p), j} softplus(<e_u, e_n_j> - <e_u, e_p>)
    L2  = l2 * mean_batch 0.5 * (|e0_u|^2 + |e0_p|^2 + mean_j |e0_n_j|^2)

plus, when nodes have features, the same BPR on the features-only layer 0 of
the batch's users and items (what a new user or product gets), so the cold
path is trained and not just initialised. Validation (carved from the
training data, never the test set) picks the best epoch and stops early.
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
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency, normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.checkpoint import load_checkpoint, save_checkpoint
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.ddp import Distributed
from recsys.training.evaluator import RankingEvaluator
from recsys.training.init import spectral_embeddings
from recsys.training.sampling import NegativeSampler, NeighborSampler, PositiveSampler
from recsys.training.tracking import Tracker

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
                data.train_user, data.train_item, data.train_weight, data.n_users,
                data.n_items, cfg.embedding_dim, cfg.init_std, cfg.seed,
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


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier for 0-based ``epoch``."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / cfg.warmup_epochs
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    t = min(max(epoch - cfg.warmup_epochs, 0) / span, 1.0)
    return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """``mean softplus(neg - pos)`` for scores ``pos`` ``[B]`` and ``neg`` ``[B, n]``."""
    return F.softplus(neg - pos.unsqueeze(1)).mean()


class _Batches:
    """Draws the training tensors of one step, shared by both modes."""

    def __init__(self, data: InteractionData, cfg: TrainConfig, device: torch.device) -> None:
        user = torch.from_numpy(data.train_user).to(device)
        item = torch.from_numpy(data.train_item).to(device)
        weight = torch.from_numpy(data.train_weight).to(device)
        self.neg = NegativeSampler(user, item, data.n_users, data.n_items)
        # users who saw the whole catalogue have no negative: no BPR signal to learn from
        keep = self.neg.has_negative(user) & (weight > 0)
        self.user, self.item = user[keep], item[keep]
        if self.user.numel() == 0:
            raise ValueError("no training edge has a negative item to contrast with")
        self.pos = PositiveSampler(weight[keep])
        self.cfg = cfg

    @property
    def n_edges(self) -> int:
        return int(self.user.numel())


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


def _loss(
    model: FeatureLightGCN,
    cfg: TrainConfig,
    u: Tensor,
    p: Tensor,
    neg: Tensor,
    eu: Tensor,
    ep: Tensor,
    en: Tensor,
    layer0: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss from final embeddings ``eu``, ``ep`` ``[B, d]`` and ``en`` ``[B, n, d]``.

    ``layer0``: the layer-0 rows of ``u``, ``p`` and ``neg`` when the caller
    already gathered them (otherwise looked up here).
    """
    pos_s = (eu * ep).sum(-1)
    neg_s = torch.bmm(en, eu.unsqueeze(2)).squeeze(2)
    bpr = bpr_loss(pos_s, neg_s)
    if layer0 is None:
        layer0 = (model.user_layer0(u), model.item_layer0(p), model.item_layer0(neg))
    e0u, e0p, e0n = layer0
    # = mean over the batch of 0.5 * (|e0_u|^2 + |e0_p|^2 + mean_j |e0_n_j|^2)
    reg = 0.5 * (e0u.square().sum() + e0p.square().sum() + e0n.square().sum() / neg.shape[1])
    reg = reg / u.shape[0]
    loss = bpr + cfg.l2 * reg
    parts = {"bpr": float(bpr.detach())}
    if cfg.feature_loss_weight > 0 and model.user_features is not None:
        cu = model.project_user_features(model.user_features[u])
        cold_u = bpr_loss((cu * ep).sum(-1), (cu.unsqueeze(1) * en).sum(-1))
        loss = loss + cfg.feature_loss_weight * cold_u
        parts["cold_user_bpr"] = float(cold_u.detach())
    if cfg.feature_loss_weight > 0 and model.item_features is not None:
        assert model.item_features is not None
        cp = model.project_item_features(model.item_features[p])
        cn = model.project_item_features(model.item_features[neg])
        cold_i = bpr_loss((eu * cp).sum(-1), (eu.unsqueeze(1) * cn).sum(-1))
        loss = loss + cfg.feature_loss_weight * cold_i
        parts["cold_item_bpr"] = float(cold_i.detach())
    return loss, parts


def resolve_mode(cfg: TrainConfig, n_edges: int) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    return "full" if n_edges <= cfg.full_graph_max_edges else "sampled"


def _state_copy(model: FeatureLightGCN) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


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
) -> TrainResult:
    """Train a :class:`FeatureLightGCN` on ``data`` with BPR; see the module docstring.

    ``checkpoint_dir`` (a URI) receives a resumable checkpoint every
    ``cfg.checkpoint_every`` epochs; with ``resume`` an existing one there is
    continued. ``max_epochs`` stops this call early without changing the
    schedule (to test resumption).

    ``dist`` (from :func:`recsys.training.ddp.init_distributed`) makes this one
    rank of a data-parallel job: it trains on its slice of every batch and the
    gradients are averaged over the ranks; only rank 0 validates (and decides
    early stopping for all), keeps the best state and writes checkpoints.
    """
    cfg = cfg or TrainConfig()
    ctx = dist or Distributed()
    tracker = tracker or Tracker()
    dev = torch.device(device)
    threads = cfg.resolved_threads()
    if threads:
        torch.set_num_threads(threads)

    split = split_validation(data, cfg.val_fraction, cfg.seed)
    train_data = split.train
    evaluator = RankingEvaluator(
        train_data.train_user,
        train_data.train_item,
        split.val_user,
        split.val_item,
        data.n_users,
        data.n_items,
        ks=(cfg.eval_k,),
        max_users=cfg.eval_max_users,
        seed=cfg.seed,
    )
    mode = resolve_mode(cfg, train_data.n_interactions)
    adj = adjacency_for(train_data, cfg).to(dev)
    model = build_model(train_data, cfg).to(dev)
    batches = _Batches(train_data, cfg, dev)
    nsampler = NeighborSampler.from_csr(adj.matrix) if mode == "sampled" else None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    # under DDP ``gen`` draws the epoch order, the same on every rank so that their slices
    # are disjoint; negatives and neighbour samples come from a generator of the rank's own,
    # reseeded from (seed, rank, epoch) so a resumed job draws what the uninterrupted one would
    neg_gen = torch.Generator(device=dev) if ctx.enabled else gen

    history: list[dict[str, float]] = []
    start_epoch = 0
    best_score = -math.inf
    best_epoch = 0
    best_state: dict[str, Tensor] | None = None
    bad_evals = 0
    elapsed_before = 0.0
    cfg_json = cfg.model_dump_json()
    if checkpoint_dir and resume:
        ck = load_checkpoint(checkpoint_dir, map_location=dev)
        if ck is not None:
            if ck.get("config") != cfg_json:
                log.warning("resuming %s with a different config than it was started with",
                            checkpoint_dir)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"].cpu())  # generator states are CPU byte tensors
            start_epoch = int(ck["epoch"])
            history = list(ck["history"])
            best_score = float(ck["best_score"])
            best_epoch = int(ck["best_epoch"])
            best_state = ck["best_state"] or None
            bad_evals = int(ck["bad_evals"])
            elapsed_before = float(ck.get("elapsed", 0.0))
            log.info("resumed from %s at epoch %d", checkpoint_dir, start_epoch)

    tracker.log_params(
        {"config": cfg.model_dump(), "mode": mode, "device": str(dev),
         "n_users": data.n_users, "n_items": data.n_items,
         "train_edges": train_data.n_interactions, "val_pairs": int(split.val_user.size)}
    )
    log.info(
        "training %s: %d users, %d items, %d train edges, %d validation pairs, mode=%s, device=%s",
        f"K={cfg.num_layers} d={cfg.embedding_dim}", data.n_users, data.n_items,
        train_data.n_interactions, split.val_user.size, mode, dev,
    )

    n = cfg.negatives
    m = max(1, min(cfg.hard_negative_candidates, data.n_items // cfg.items_per_hard_candidate))
    precision: torch.dtype = getattr(torch, cfg.hard_negative_precision)
    bs = cfg.batch_size if mode == "full" else cfg.sampled_batch_size
    bs = max(1, min(bs, math.ceil(batches.n_edges / cfg.min_steps_per_epoch)))
    fanouts = [cfg.fanouts[min(k, len(cfg.fanouts) - 1)] for k in range(cfg.num_layers)]
    last_epoch = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    stopped_early = False
    t0 = time.perf_counter()
    monitor_seconds = 0.0
    bar = tqdm(range(start_epoch, last_epoch), desc="train", unit="epoch",
               disable=not (cfg.progress and ctx.is_main), initial=start_epoch, total=last_epoch)
    epoch = start_epoch
    for epoch in bar:
        model.train()
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * lr_factor(cfg, epoch)
        order = batches.pos.epoch(gen)
        if ctx.enabled:
            seq = np.random.SeedSequence([cfg.seed, ctx.rank, epoch])
            neg_gen.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        loss_sum, steps = 0.0, 0
        parts_sum: dict[str, float] = {}
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
            cand = batches.neg.sample(u, n * m, neg_gen)
            layer0: tuple[Tensor, Tensor, Tensor] | None = None
            if mode == "full":
                x0 = model.all_layer0()  # [U+I, d]
                nodes = model.smooth(x0, adj)
                if m > 1:
                    # score all n*m candidates without autograd; only the chosen
                    # negatives enter the graph (same loss and gradients, far less
                    # backward work than gathering every candidate with grad)
                    frozen = nodes.detach()
                    neg = hardest_candidates(
                        _rows(frozen, u), frozen[data.n_users :], cand, n, m, precision
                    )
                else:
                    neg = cand
                # users, positives and negatives in one gather from the final and one from
                # the layer-0 table: one scatter each in the backward
                b, n_neg = u.numel(), neg.shape[1]
                rows = torch.cat([u, p + data.n_users, neg.reshape(-1) + data.n_users])
                eu, ep, flat_neg = torch.split(_rows(nodes, rows), [b, b, b * n_neg])
                ecand = flat_neg.view(b, n_neg, -1)
                r0u, r0p, r0n = torch.split(_rows(x0, rows), [b, b, b * n_neg])
                layer0 = (r0u, r0p, r0n.view(b, n_neg, -1))
            else:
                assert nsampler is not None
                nu = data.n_users
                seeds = torch.cat([u, p + nu, cand.reshape(-1) + nu])
                sub = nsampler.sample(seeds, fanouts, neg_gen)
                x0 = model.node_layer0(sub.nodes)
                final = model.readout(model.propagate(x0, sub.matrix, sub.transpose))
                emb = _rows(final, sub.seed_index)
                b = u.numel()
                eu, ep = emb[:b], emb[b : 2 * b]
                ecand = emb[2 * b :].view(b, n * m, -1)
            if mode == "full":
                en = ecand
            elif m > 1:
                # the candidates' rows of this subgraph, chosen by position
                flat = ecand.reshape(b * n * m, -1)
                slots = torch.arange(b * n * m, device=dev).view(b, n * m)
                pick = hardest_candidates(eu.detach(), flat.detach(), slots, n, m, precision)
                neg = cand.reshape(-1)[pick]
                en = _rows(flat, pick)
            else:
                neg, en = cand, ecand
            loss, parts = _loss(model, cfg, u, p, neg, eu, ep, en, layer0)
            optimizer.zero_grad(set_to_none=True)
            if ctx.enabled:
                (loss * (share * ctx.world_size)).backward()  # type: ignore[no-untyped-call]
                ctx.all_reduce_gradients(model.parameters())
                loss_sum += float(loss.detach()) * share
                parts = {k: v * share for k, v in parts.items()}
            else:
                loss.backward()  # type: ignore[no-untyped-call]
                loss_sum += float(loss.detach())
            optimizer.step()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
            steps += 1
        if ctx.enabled:  # the batch losses, not this rank's slices'
            keys = sorted(parts_sum)
            total = ctx.sum([loss_sum, *(parts_sum[k] for k in keys)], dev)
            loss_sum, parts_sum = total[0], dict(zip(keys, total[1:], strict=True))
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(steps, 1),
            "lr": optimizer.param_groups[0]["lr"],
        }
        row.update({k: v / max(steps, 1) for k, v in parts_sum.items()})
        done = epoch + 1 == cfg.epochs  # the schedule's end, not a max_epochs pause
        if ctx.is_main and not evaluator.empty and ((epoch + 1) % cfg.eval_every == 0 or done):
            model.eval()
            with torch.no_grad():
                ue, ie = model(adj)
                val = evaluator.evaluate(ue, ie)
            row.update({f"val_{k}": v for k, v in val.items()})
            score = val.get(cfg.select_metric, -math.inf)
            if score > best_score:
                best_score, best_epoch, bad_evals = score, epoch + 1, 0
                best_state = _state_copy(model)
            else:
                bad_evals += 1
            row["elapsed_s"] = elapsed_before + time.perf_counter() - t0 - monitor_seconds
            if on_eval is not None:
                tm = time.perf_counter()
                row.update(on_eval(epoch + 1, model))
                monitor_seconds += time.perf_counter() - tm
            if bad_evals >= cfg.patience:
                stopped_early = True
        stopped_early = ctx.broadcast_flag(stopped_early, dev)
        row.setdefault("elapsed_s", elapsed_before + time.perf_counter() - t0 - monitor_seconds)
        history.append(row)
        tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
        bar.set_postfix({k: f"{row[k]:.4f}" for k in ("loss", f"val_{cfg.select_metric}")
                         if k in row})
        log.debug("epoch %s", json.dumps(row))
        pause = epoch + 1 == last_epoch
        save = (epoch + 1) % cfg.checkpoint_every == 0 or pause or stopped_early
        if checkpoint_dir and ctx.is_main and save:
            save_checkpoint(checkpoint_dir, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch + 1,
                "history": history,
                "best_score": best_score,
                "best_epoch": best_epoch,
                "best_state": best_state or {},
                "bad_evals": bad_evals,
                "elapsed": row["elapsed_s"],
                "config": cfg_json,
            })
        if stopped_early:
            log.info("early stop at epoch %d: best %s=%.4f at epoch %d",
                     epoch + 1, cfg.select_metric, best_score, best_epoch)
            break
    bar.close()
    epochs_run = history[-1]["epoch"] if history else start_epoch
    if best_state is None:
        best_epoch = int(epochs_run)
    else:
        model.load_state_dict(best_state)
    model.eval()
    best_val = {
        k[4:]: v for r in history if r["epoch"] == best_epoch for k, v in r.items()
        if k.startswith("val_")
    }
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val=best_val,
        epochs_run=int(epochs_run),
        train_seconds=float(history[-1]["elapsed_s"]) if history else 0.0,
        mode=mode,
        stopped_early=stopped_early,
        val_pairs=int(split.val_user.size),
    )
