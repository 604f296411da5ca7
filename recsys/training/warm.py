"""Warm start: today's model begins where production's left off.

Id maps are stable across snapshots (new ids are appended) and the feature encoding is
carried forward (:func:`recsys.graph.features.extend_table`), so yesterday's parameters
mean the same thing today. A warm start copies production's layer-0 parameters into the
new model: the id embedding of every user and product production knew (matched by id, not
by position), and the feature projections. Users and products new since then get a zero id
embedding, so their layer 0 is their feature projection, exactly what serving computes for
a newcomer. Before any step, a known user's layer 0 on production's features is therefore
production's own.

A warm start that cannot apply (another embedding size or depth, another feature width, a
blended production model, its graph gone) says why and training starts cold; the reason is
recorded in the model's manifest and report. A source that is not a model at all is an
input error (exit 2), before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.training.config import TrainConfig

log = get_logger(__name__)


@dataclass
class WarmStart:
    """What a warm start from ``source`` does (``applied``) or why it does not."""

    source: str | None
    applied: bool
    reason: str
    users_known: int = 0
    items_known: int = 0
    users_new: int = 0
    items_new: int = 0
    state: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """Parameters of the new model's layer 0 (``user_embedding.weight``, projections, ...)."""

    def record(self) -> dict[str, Any]:
        """What the model manifest and report say of it."""
        return {
            "mode": "warm" if self.applied else "cold",
            "source": self.source,
            "reason": self.reason,
            "users_known": self.users_known,
            "items_known": self.items_known,
            "users_new": self.users_new,
            "items_new": self.items_new,
        }


def cold(reason: str, source: str | None = None) -> WarmStart:
    if source is not None:
        log.warning("warm start from %s not applied, training cold: %s", source, reason)
    return WarmStart(source=source, applied=False, reason=reason)


def _rows(prev: Tensor, prev_ids: np.ndarray, ids: np.ndarray) -> tuple[Tensor, int]:
    """Rows of ``prev`` (indexed by ``prev_ids``) laid out for ``ids``; zeros for new ids."""
    from recsys.graph.idmap import index_of

    pos = index_of(np.asarray(prev_ids, dtype=object), np.asarray(ids, dtype=object))
    out = torch.zeros(len(ids), prev.shape[1], dtype=prev.dtype)
    known = torch.from_numpy(pos >= 0)
    out[known] = prev[torch.from_numpy(pos[pos >= 0])]
    return out, int(known.sum())


def plan_warm_start(source: str, snapshot: Any, cfg: TrainConfig) -> WarmStart:
    """The warm start of a model on ``snapshot`` from the model artifact at ``source``."""
    from recsys.graph.snapshot import load_id_maps
    from recsys.training.artifact import load_model

    try:
        prev = load_model(source)
    except (OSError, KeyError) as exc:
        # asked for by name: a path that is not a model is the caller's mistake, not a
        # reason to spend a cold run's time
        raise InputError(f"--init-from {source}: not a readable model artifact ({exc})") from None
    except InputError as exc:
        raise InputError(f"--init-from: {exc}") from None
    m = prev.model
    fu = int(snapshot.user_features.shape[1])
    fi = int(snapshot.item_features.shape[1])
    if m.embedding_dim != prev.config.embedding_dim:
        # a blend widens the model by its fixed filter columns (d + k): its item table is
        # recomputed from the graph, not trained
        return cold("production is a blended model (fixed filter columns)", source)
    if m.embedding_dim != cfg.embedding_dim or m.num_layers != cfg.num_layers:
        return cold(
            f"architecture differs: production d={m.embedding_dim} K={m.num_layers}, "
            f"this run d={cfg.embedding_dim} K={cfg.num_layers}",
            source,
        )
    if (m.user_feature_dim, m.item_feature_dim) != (fu, fi):
        return cold(
            f"feature width changed: production users {m.user_feature_dim} / items "
            f"{m.item_feature_dim}, this graph {fu} / {fi}",
            source,
        )
    try:
        prev_users, prev_items = load_id_maps(prev.graph_uri)
    except (InputError, OSError) as exc:
        return cold(f"production's graph {prev.graph_uri} is unreadable: {exc}", source)
    with torch.no_grad():
        users, nu = _rows(
            m.user_embedding.weight.detach().cpu(), prev_users, np.asarray(snapshot.user_ids)
        )
        items, ni = _rows(
            m.item_embedding.weight.detach().cpu(), prev_items, np.asarray(snapshot.item_ids)
        )
        state: dict[str, Tensor] = {"user_embedding.weight": users, "item_embedding.weight": items}
        for name, proj in (("user_proj", m.user_proj), ("item_proj", m.item_proj)):
            if proj is not None:
                state[f"{name}.weight"] = proj.weight.detach().cpu().clone()
                state[f"{name}.bias"] = proj.bias.detach().cpu().clone()
    warm = WarmStart(
        source=source,
        applied=True,
        reason="production's layer 0 carried over",
        users_known=nu,
        items_known=ni,
        users_new=len(users) - nu,
        items_new=len(items) - ni,
        state=state,
    )
    log.info(
        "warm start from %s: %d users and %d products known, %d and %d new",
        source,
        nu,
        ni,
        warm.users_new,
        warm.items_new,
    )
    return warm


def warm_config(cfg: TrainConfig) -> TrainConfig:
    """The warm-start schedule: ``warm_epochs`` at ``lr * warm_lr_scale``."""
    return cfg.model_copy(
        update={"epochs": cfg.warm_epochs, "lr": cfg.lr * cfg.warm_lr_scale, "init": "normal"}
    )
