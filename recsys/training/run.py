"""``recsys train`` on a graph snapshot (``recsys evaluate``: :mod:`recsys.training.evaluate`).

Training writes resumable checkpoints next to the output (``<out>.checkpoint``
unless told where, removed once the artifact is published), so a retried task
continues where the failed one stopped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from recsys.item_item import ItemItemTerm
from recsys.logs import get_logger
from recsys.models.lightgcn import FeatureLightGCN
from recsys.storage import exists, get_fs
from recsys.training.artifact import write_model_artifact
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.ddp import Distributed, init_distributed, shutdown
from recsys.training.evaluator import RankingEvaluator
from recsys.training.item_item import histories
from recsys.training.loop import train
from recsys.training.tracking import start_tracking
from recsys.training.training_graph import adjacency_for
from recsys.training.warm import WarmStart, cold, plan_warm_start, warm_config

log = get_logger(__name__)

KS = (10, 20, 50)


def holdout_evaluator(snapshot: Any, ks: tuple[int, ...] = KS) -> RankingEvaluator:
    """Full ranking on the snapshot's holdout, every train interaction masked."""
    return RankingEvaluator(
        snapshot.train_user,
        snapshot.train_item,
        snapshot.holdout_user,
        snapshot.holdout_item,
        int(snapshot.n_users),
        int(snapshot.n_items),
        ks=ks,
    )


def model_metrics(
    model: FeatureLightGCN,
    data: InteractionData,
    cfg: TrainConfig,
    evaluator: RankingEvaluator,
    item_item: ItemItemTerm | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` (and its item-item term) propagating over all of ``data``
    (validation pairs folded in)."""
    if evaluator.empty:
        return {}
    adj = adjacency_for(data, cfg).to(next(model.parameters()).device)
    with torch.no_grad():
        ue, ie = model(adj)
    extra = item_item.scorer(histories(data)) if item_item is not None else None
    return evaluator.evaluate(ue, ie, extra)


def baseline_metrics(
    snapshot: Any, evaluator: RankingEvaluator, names: tuple[str, ...] | None = None
) -> dict[str, dict[str, float]]:
    """Training-free baselines from :mod:`recsys.evaluation.baselines` on the same harness."""
    from recsys.evaluation import baselines as bl
    from recsys.evaluation.ranking import evaluate_topk, interactions_csr, topk_full_ranking

    train_csr = interactions_csr(
        snapshot.train_user,
        snapshot.train_item,
        int(snapshot.n_users),
        int(snapshot.n_items),
        weight=snapshot.train_weight,
    )
    makers: dict[str, Any] = {"popularity": bl.Popularity, "ease": bl.EASE, "gf-cf": bl.GFCF}
    out: dict[str, dict[str, float]] = {}
    for name, make in makers.items():
        if names is not None and name not in names:
            continue
        try:
            rec = make()
            rec.fit(train_csr)
            topk = topk_full_ranking(
                rec.score, evaluator.users, evaluator.train_csr, max(evaluator.ks), 1024
            )
            out[name] = evaluate_topk(
                topk, evaluator.users, evaluator.test_csr, evaluator.ks, n_items=evaluator.n_items
            )
        except Exception as exc:  # a baseline that cannot run on this graph is reported, not fatal
            log.warning("baseline %s skipped: %s", name, exc)
    return out


TIMING_KEYS = frozenset({"elapsed_s"})
"""History entries that measure wall-clock time rather than the model."""


def reproducible_history(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """``history`` without wall-clock entries: what the artifact records."""
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def train_on_snapshot(
    graph_uri: str,
    out_uri: str,
    cfg: TrainConfig,
    device: str = "cpu",
    checkpoint_uri: str | None = None,
    init_from: str | None = None,
) -> dict[str, Any]:
    """Train on a graph snapshot and publish the model artifact at ``out_uri``.

    ``init_from`` (a model artifact, production's) warm-starts training with the warm
    schedule (:mod:`recsys.training.warm`); when it cannot apply, training starts cold and
    the model's manifest and report say why.

    Under ``torchrun`` this is one rank of a data-parallel job
    (:mod:`recsys.training.ddp`): every rank trains, rank 0 alone evaluates,
    tracks, checkpoints and publishes while the others wait for it.
    ``checkpoint_uri`` defaults to ``<out>.checkpoint``.
    """
    ctx = init_distributed(device)
    try:
        ckpt = checkpoint_uri or out_uri.rstrip("/") + ".checkpoint"
        from recsys.graph.snapshot import load_snapshot

        snapshot = load_snapshot(graph_uri)
        warm = plan_warm_start(init_from, snapshot, cfg) if init_from else cold("no --init-from")
        if warm.applied:
            cfg = warm_config(cfg)
        if ctx.is_main:
            summary = _train_and_publish(
                snapshot, graph_uri, out_uri, cfg, ctx.device(device), ckpt, ctx, warm
            )
        else:
            data = InteractionData.from_snapshot(snapshot)
            train(data, cfg, device=ctx.device(device), checkpoint_dir=ckpt, dist=ctx, warm=warm)
            summary = {"uri": out_uri, "rank": ctx.rank}
        ctx.barrier()  # the job ends when rank 0 has published
        return summary
    finally:
        shutdown(ctx)


def _train_and_publish(
    snapshot: Any,
    graph_uri: str,
    out_uri: str,
    cfg: TrainConfig,
    device: str,
    ckpt: str,
    ctx: Distributed,
    warm: WarmStart,
) -> dict[str, Any]:
    from recsys.evaluation.report import render_model_report

    data = InteractionData.from_snapshot(snapshot)
    with start_tracking(cfg.tracking, run_name=f"train {Path(out_uri).name}") as tracker:
        tracker.set_tags(
            {"graph_uri": graph_uri, "out_uri": out_uri, "world_size": str(ctx.world_size)}
        )
        result = train(
            data, cfg, device=device, checkpoint_dir=ckpt, tracker=tracker, dist=ctx, warm=warm
        )
        evaluator = holdout_evaluator(snapshot)
        holdout = model_metrics(result.model, data, cfg, evaluator, result.item_item)
        baselines = baseline_metrics(snapshot, evaluator, ("popularity",))
        # wall-clock time and the MLflow run id go to MLflow and the log, never into the
        # artifact: its manifest must be a function of (graph, config, seed) alone, so a
        # rerun of the same day publishes the same bytes
        tracker.log_metrics({"train_seconds": result.train_seconds}, step=result.epochs_run)
        log.info(
            "trained %d epochs in %.1f s (mlflow run %s)",
            result.epochs_run,
            result.train_seconds,
            tracker.run_id,
        )
        history = reproducible_history(result.history)
        metrics: dict[str, Any] = {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "mode": result.mode,
            "validation": result.best_val,
            "holdout": holdout,
            "holdout_users": int(evaluator.users.size),
            "baselines": baselines,
            "start": warm.record(),
        }
        if "item_item_weight" in result.extra:
            metrics["item_item"] = {
                "weight": result.extra["item_item_weight"],
                "validation": result.extra["item_item_validation"],
                "width": result.item_item.width if result.item_item is not None else 0,
                **(
                    {"skipped": result.extra["item_item_skipped"]}
                    if "item_item_skipped" in result.extra
                    else {}
                ),
            }
        tracker.log_metrics({f"holdout_{k}": v for k, v in holdout.items()}, step=result.epochs_run)
        report = render_model_report(
            f"Model {out_uri}",
            {"gnn": holdout, **baselines} if holdout else {"gnn (validation)": result.best_val},
            history,
            notes={
                "graph": graph_uri,
                "architecture": f"FeatureLightGCN K={cfg.num_layers} d={cfg.embedding_dim} "
                f"norm={cfg.norm}",
                "selection": f"best validation {cfg.select_metric} at epoch {result.best_epoch} "
                f"of {result.epochs_run}",
                "holdout": "snapshot holdout, full ranking, train items masked",
                "time budget": (
                    f"{cfg.max_train_seconds:g} s (the best validation checkpoint within it)"
                    if cfg.max_train_seconds is not None
                    else "none"
                ),
                "item-item term": (
                    f"{result.item_item.width} entries per product, weight "
                    f"{result.extra['item_item_weight']:g} (chosen on validation)"
                    if result.item_item is not None
                    else f"none ({result.extra.get('item_item_skipped', 'weight 0 on validation')})"
                    if "item_item_weight" in result.extra
                    else "none"
                ),
                "start": (
                    f"warm from {warm.source} ({warm.users_known} users, {warm.items_known} "
                    f"products carried over; {cfg.epochs} epochs at lr {cfg.lr:g})"
                    if warm.applied
                    else f"cold ({warm.reason})"
                ),
            },
        )
        sha = write_model_artifact(
            out_uri,
            result.model,
            cfg,
            graph_uri,
            history,
            metrics,
            report,
            info={"best_epoch": result.best_epoch, "mode": result.mode, "start": warm.record()},
            item_item=result.item_item,
        )
        if cfg.tracking.enabled:
            with tempfile.TemporaryDirectory() as tmp:
                fs, root = get_fs(out_uri)
                fs.get(root, tmp, recursive=True)
                tracker.log_artifacts(tmp)
    if exists(ckpt):
        fs, path = get_fs(ckpt)
        fs.rm(path, recursive=True)
    log.info("model published at %s (manifest sha256 %s)", out_uri, sha[:12])
    return {
        "uri": out_uri,
        "manifest_sha256": sha,
        **metrics,
        "train_seconds": round(result.train_seconds, 2),
        "mlflow_run_id": tracker.run_id,
    }
