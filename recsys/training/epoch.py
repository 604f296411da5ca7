"""One epoch of training: the learning-rate schedule, what every epoch of a run shares
(:class:`EpochPlan`) and :func:`train_epoch`, the pass over the training edges that
:func:`recsys.training.loop.train` runs each epoch (the steps' rows and loss:
:mod:`recsys.training.steps`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recsys.training import losses
from recsys.training.config import TrainConfig
from recsys.training.ddp import Distributed
from recsys.training.state import TrainState
from recsys.training.steps import NegativePlan, full_graph_rows, objective, sampled_rows
from recsys.training.training_graph import TrainingGraph


def lr_factor(cfg: TrainConfig, epoch: float, elapsed: float = 0.0) -> float:
    """Learning-rate multiplier for 0-based ``epoch`` (a fraction of the way into it with
    ``lr_per_step``) starting ``elapsed`` seconds into training.

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

    def set_lr(at: float) -> None:
        # (under DDP the ranks' clocks differ: the schedule follows the epochs alone there)
        factor = lr_factor(cfg, at, 0.0 if ctx.enabled else plan.elapsed())
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * factor

    set_lr(epoch)
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
        if cfg.lr_per_step and s:
            set_lr(epoch + s / order.numel())
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
