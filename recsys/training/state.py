"""The state of a training run: a fresh model, its optimiser and generators, progress, the
best checkpoint so far; saved to and restored from a resumable checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys.logs import get_logger
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.blend import BlendChoice
from recsys.training.checkpoint import load_checkpoint, save_checkpoint
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.init import spectral_embeddings
from recsys.training.warm import WarmStart

log = get_logger(__name__)


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
    filter_choice: BlendChoice | None = None
    """The graph filter's weight chosen on validation at the fold (``blend_rank`` or
    ``item_item_keep``, with a fold)."""

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
    # "blend": what checkpoints called the choice when the blend was the only filter
    state.filter_choice = _choice(ck.get("filter_choice") or ck.get("blend"))
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
            "filter_choice": _choice_record(state.filter_choice),
        },
    )


def _choice(record: dict[str, Any] | None) -> BlendChoice | None:
    if not record:
        return None
    return BlendChoice(
        float(record["weight"]), {float(w): float(v) for w, v in record["scores"].items()}
    )


def _choice_record(choice: BlendChoice | None) -> dict[str, Any]:
    if choice is None:
        return {}
    return {"weight": choice.weight, "scores": {str(w): v for w, v in choice.scores.items()}}
