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
them, its set-up in ``_start`` and each epoch's end (validate, fold, record) in ``_Run``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData, ValidationSplit, split_validation
from recsys.training.ddp import Distributed
from recsys.training.epoch import EpochPlan, train_epoch
from recsys.training.evaluator import RankingEvaluator
from recsys.training.result import TrainResult, apply_filter, choose_filter, result_of
from recsys.training.state import TrainState, init_state, restore_state, save_state
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


@dataclass
class _Run:
    """One call of :func:`train`: what its epochs share, the training clock, and the
    decisions taken at an epoch's end (validate, fold, record, finish)."""

    data: InteractionData
    split: ValidationSplit
    cfg: TrainConfig
    mode: str
    device: torch.device
    ctx: Distributed
    evaluator: RankingEvaluator
    tracker: Tracker
    state: TrainState
    graph: TrainingGraph
    on_eval: OnEval | None
    t0: float = 0.0
    excluded_seconds: float = 0.0
    """The test monitor and the filter's choice: not training time."""
    filter_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def can_validate(self) -> bool:
        return self.ctx.is_main and not self.evaluator.empty

    def elapsed(self) -> float:
        """Training seconds so far, this run's and those before a resume."""
        return self.state.elapsed_before + time.perf_counter() - self.t0 - self.excluded_seconds

    def validate_into(self, row: dict[str, float]) -> bool:
        """Validation metrics into ``row``, the best checkpoint kept; whether patience is spent."""
        state, metric = self.state, self.cfg.select_metric
        val = validate(state.model, self.graph.adj, self.evaluator)
        row.update({f"val_{k}": v for k, v in val.items()})
        score = val.get(metric, -math.inf)
        if score > state.best_score:
            state.snapshot_best(score, state.epoch)
        else:
            state.bad_evals += 1
        return state.bad_evals >= self.cfg.patience

    def monitor(self, row: dict[str, float]) -> None:
        """The training time into ``row``, then the caller's metrics (outside the clock)."""
        row["elapsed_s"] = self.elapsed()
        if self.on_eval is not None:
            tm = time.perf_counter()
            row.update(self.on_eval(self.state.epoch, self.state.model))
            self.excluded_seconds += time.perf_counter() - tm

    def fold(self) -> bool:
        """At the fold epoch: the validation pairs join training for the last epochs, but only
        while validation still improves (the last validated checkpoint is then the best one);
        whether they did (if not, training stops there)."""
        cfg, state = self.cfg, self.state
        fold = self.evaluator.empty or state.best_epoch == state.epoch
        fold = self.ctx.broadcast_flag(fold, self.device)
        if not fold:
            return False
        if self.can_validate:
            # the last moment validation is clean: choose the filter's weight now; its
            # minutes (an operator build) stay out of the budget's epoch-time estimate
            tf = time.perf_counter()
            state.filter_choice = choose_filter(
                state.model, self.split.train, self.graph.adj, self.evaluator, cfg
            )
            self.filter_seconds = time.perf_counter() - tf
            self.excluded_seconds += self.filter_seconds
        log.info(
            "epoch %d: the validation pairs join training for the last %d epochs",
            state.epoch,
            cfg.fold_validation_epochs,
        )
        state.folded = True
        self.graph = TrainingGraph.build(self.data, cfg, self.mode, self.device)
        return True

    def record(self, row: dict[str, float]) -> None:
        """The epoch's row into the history and the tracker."""
        row.setdefault("elapsed_s", self.elapsed())
        self.state.history.append(row)
        self.tracker.log_metrics(
            {k: v for k, v in row.items() if k != "epoch"}, step=self.state.epoch
        )
        log.debug("epoch %s", json.dumps(row))

    def finish(self, stopped_early: bool) -> TrainResult:
        """The result: the chosen checkpoint, with the graph filter's term when one was chosen."""
        state, cfg = self.state, self.cfg
        result = result_of(state, cfg, self.mode, stopped_early, int(self.split.val_user.size))
        if not self.can_validate:
            return result
        tf = time.perf_counter()
        choice = state.filter_choice
        if choice is None and not state.folded:
            choice = choose_filter(
                result.model, self.split.train, self.graph.adj, self.evaluator, cfg
            )
        if choice is not None:
            # after a fold, the graph it trained on last is the served one already
            folded_adj = self.graph.adj

            def served() -> NormalizedAdjacency:
                return folded_adj if state.folded else adjacency_for(self.data, cfg).to(self.device)

            apply_filter(result, choice, self.data, served, cfg)
            # wall time: kept out of the artifact, as train_seconds is (run.py)
            result.extra["filter_seconds"] = self.filter_seconds + time.perf_counter() - tf
        return result


def _start(
    data: InteractionData,
    cfg: TrainConfig,
    dev: torch.device,
    ctx: Distributed,
    tracker: Tracker,
    checkpoint_dir: str | None,
    resume: bool,
    warm: WarmStart | None,
    on_eval: OnEval | None,
) -> tuple[_Run, EpochPlan]:
    """The run's validation carve, graph, state (resumed when a checkpoint is there) and plan."""
    split = split_validation(data, cfg.val_fraction, cfg.seed)
    evaluator = RankingEvaluator.of_validation(
        split, ks=(cfg.eval_k,), max_users=cfg.eval_max_users, seed=cfg.seed
    )
    mode = resolve_mode(cfg, split.train.n_interactions)
    graph = TrainingGraph.build(split.train, cfg, mode, dev)
    state = init_state(split.train, cfg, dev, warm)
    if checkpoint_dir and resume:
        restore_state(state, checkpoint_dir, cfg.model_dump_json(), dev)
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
    run = _Run(data, split, cfg, mode, dev, ctx, evaluator, tracker, state, graph, on_eval)
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
        elapsed=run.elapsed,
    )
    return run, plan


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
    dev = torch.device(device)
    threads = cfg.resolved_threads()
    if threads:
        torch.set_num_threads(threads)
    run, plan = _start(
        data, cfg, dev, ctx, tracker or Tracker(), checkpoint_dir, resume, warm, on_eval
    )
    state, cfg_json = run.state, cfg.model_dump_json()
    # the epoch after which the validation pairs join training (never, without folding)
    fold_at = cfg.epochs - cfg.fold_validation_epochs if cfg.fold_validation_epochs else -1
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
    first_epoch, started_at = state.epoch, run.elapsed()
    for epoch in bar:
        state.epoch = epoch
        row = train_epoch(state, run.graph, plan)
        state.epoch = epoch + 1
        # the schedule's end (not a max_epochs pause), or the time budget: stop when another
        # epoch (at this run's mean epoch time, validation included) would end past it
        spent = run.elapsed()
        out_of_time = cfg.max_train_seconds is not None and (
            spent + (spent - started_at) / (epoch + 1 - first_epoch) > cfg.max_train_seconds
        )
        out_of_time = ctx.broadcast_flag(out_of_time, dev)
        done = epoch + 1 == cfg.epochs or out_of_time
        at_fold = epoch + 1 == fold_at and not out_of_time
        due = (epoch + 1) % cfg.eval_every == 0 or done or at_fold
        if run.can_validate and due and not state.folded:
            stopped_early = run.validate_into(row)
        if run.can_validate and due:
            run.monitor(row)
        if at_fold and not stopped_early:
            stopped_early = not run.fold()
        if out_of_time and not stopped_early:
            log.info("time budget of %.0f s spent at epoch %d", cfg.max_train_seconds, epoch + 1)
            stopped_early = True
        stopped_early = ctx.broadcast_flag(stopped_early, dev)
        run.record(row)
        bar.set_postfix(
            {k: f"{row[k]:.4f}" for k in ("loss", f"val_{cfg.select_metric}") if k in row}
        )
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
    return run.finish(stopped_early)
