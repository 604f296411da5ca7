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

The stages: :mod:`recsys.training.state` (model, optimiser, generators, best
checkpoint, saved and restored), :mod:`recsys.training.training_graph` (what a
phase trains on), :mod:`recsys.training.steps` (the embeddings of one step's rows
and their loss), :mod:`recsys.training.epoch` (the learning-rate schedule and
:func:`~recsys.training.epoch.train_epoch`), and here :func:`validate`; :func:`train` runs
them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, split_validation
from recsys.training.ddp import Distributed
from recsys.training.epoch import EpochPlan, train_epoch
from recsys.training.evaluator import RankingEvaluator
from recsys.training.result import TrainResult, apply_filter, choose_filter, result_of
from recsys.training.state import init_state, restore_state, save_state
from recsys.training.steps import NegativePlan
from recsys.training.tracking import Tracker
from recsys.training.training_graph import TrainingGraph, adjacency_for
from recsys.training.warm import WarmStart

log = get_logger(__name__)

OnEval = Callable[[int, FeatureLightGCN], dict[str, float]]
"""Called at each validation with ``(epoch, model)``; its metrics join the history
(benchmarks use it to watch the test set; it never influences training)."""


def resolve_mode(cfg: TrainConfig, n_edges: int) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    return "full" if n_edges <= cfg.full_graph_max_edges else "sampled"


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
    monitor_seconds = 0.0  # the test monitor and the filter's choice: not training time
    filter_seconds = 0.0

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
            if fold and can_validate:
                # the last moment validation is clean: choose the filter's weight now; its
                # minutes (an operator build) stay out of the budget's epoch-time estimate
                tf = time.perf_counter()
                state.filter_choice = choose_filter(
                    state.model, split.train, graph.adj, evaluator, cfg
                )
                filter_seconds = time.perf_counter() - tf
                monitor_seconds += filter_seconds
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
    result = result_of(state, cfg, mode, stopped_early, int(split.val_user.size))
    if can_validate:
        tf = time.perf_counter()
        choice = state.filter_choice
        if choice is None and not state.folded:
            choice = choose_filter(result.model, split.train, graph.adj, evaluator, cfg)
        if choice is not None:
            # after a fold, the graph it trained on last is the served one already
            folded_adj = graph.adj

            def served() -> NormalizedAdjacency:
                return folded_adj if state.folded else adjacency_for(data, cfg).to(dev)

            apply_filter(result, choice, data, served, cfg)
            # wall time: kept out of the artifact, as train_seconds is (run.py)
            result.extra["filter_seconds"] = filter_seconds + time.perf_counter() - tf
    return result
