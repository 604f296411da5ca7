"""What training returns: the checkpoint chosen on validation, and the graph filter the model
carries (the spectral blend or the item-item term), its weight chosen on validation too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recsys.item_item import ItemItemTerm
from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.blend import BlendChoice, blended, choose_blend
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.evaluator import RankingEvaluator
from recsys.training.item_item import choose_item_item, item_item_term
from recsys.training.state import TrainState


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
    item_item: ItemItemTerm | None = None
    """The item-item term added to the model's scores (``item_item_keep``), if chosen."""


def result_of(
    state: TrainState, cfg: TrainConfig, mode: str, stopped_early: bool, val_pairs: int
) -> TrainResult:
    """The result of a finished run: the best validated checkpoint loaded into the model (or,
    after a fold, the model as the folded epochs left it)."""
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


def choose_filter(
    model: FeatureLightGCN,
    train_data: InteractionData,
    adj: NormalizedAdjacency,
    evaluator: RankingEvaluator,
    cfg: TrainConfig,
) -> BlendChoice | None:
    """The configured filter's weight on validation (``train_data`` / ``adj``: the graph with the
    validation pairs held out); None when the config adds no filter."""
    if cfg.blend_rank:
        return choose_blend(model, train_data, adj, evaluator, cfg)
    if cfg.item_item_keep:
        return choose_item_item(model, train_data, adj, evaluator, cfg)
    return None


def apply_filter(
    result: TrainResult,
    choice: BlendChoice,
    data: InteractionData,
    served: Callable[[], NormalizedAdjacency],
    cfg: TrainConfig,
) -> None:
    """Record ``choice`` in ``result.extra`` and, at a weight above 0, give the model the filter
    of the graph it serves (every training pair; ``served()`` is its adjacency)."""
    key = "blend" if cfg.blend_rank else "item_item"
    result.extra[f"{key}_weight"] = choice.weight
    result.extra[f"{key}_validation"] = {str(w): v for w, v in choice.scores.items()}
    if choice.reason:
        result.extra[f"{key}_skipped"] = choice.reason
    if choice.weight <= 0:
        return
    if cfg.blend_rank:
        result.model = blended(result.model, data, served(), cfg, choice.weight)
    else:
        result.item_item = item_item_term(result.model, data, served(), cfg, choice.weight)
