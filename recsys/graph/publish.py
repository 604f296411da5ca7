"""Stages 7-8 of either engine: the graph gate on what was built, its report, and the
snapshot published with its manifest.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.graph.arrays import unique_int
from recsys.graph.config import GraphConfig
from recsys.graph.gate import check_graph, enforce
from recsys.graph.holdout import HoldoutSize
from recsys.graph.nodes import Features
from recsys.graph.snapshot import (
    GraphSnapshot,
    ServedHistory,
    write_snapshot,
)
from recsys.graph.window import Inputs, Window
from recsys.logs import get_logger
from recsys.reports import GRAPH, report_uri, write_gate_report

log = get_logger("graph.build")


class StageTimer:
    """Logs a build stage with the as-of day and the seconds since the build began."""

    def __init__(self, as_of: dt.date) -> None:
        self.t0 = time.perf_counter()
        self.as_of = as_of

    def __call__(self, msg: str, *args: Any) -> None:
        log.info("graph %s [%.1fs] " + msg, self.as_of, time.perf_counter() - self.t0, *args)


@dataclass
class Built:
    """What either engine computed, ready for the graph gate and the snapshot writer."""

    lake: str
    out: str
    cfg: GraphConfig
    w: Window
    size: HoldoutSize
    inp: Inputs
    user_ids: np.ndarray
    item_ids: np.ndarray
    edge_user: np.ndarray
    edge_item: np.ndarray
    edge_weight: np.ndarray
    edge_types: np.ndarray
    type_counts: np.ndarray
    """Train events per event type (the gate's type-mix drift)."""
    feats: Features
    holdout_user: np.ndarray
    holdout_item: np.ndarray
    holdout_counts: dict[str, int]
    served: ServedHistory
    events_read: int
    events_in_window: int
    train_events: int
    holdout_events: int
    extra: dict[str, Any] = field(default_factory=dict)
    """Added to the manifest's ``extra`` (the Spark engine records ``engine``)."""


def gate_and_publish(
    b: Built,
    tick: Callable[..., None],
    report: str | None,
    before_publish: Callable[[str], None] | None = None,
) -> str:
    """Stages 7-8 of either engine: the graph gate (its report written pass or fail) and
    the snapshot published with its manifest; returns ``b.out``."""
    cfg, w, size, inp = b.cfg, b.w, b.size, b.inp
    as_of, out = w.as_of, b.out
    eu, ei, hu = b.edge_user, b.edge_item, b.holdout_user
    n_users, n_items = len(b.user_ids), len(b.item_ids)
    new_users = n_users - (len(inp.prev_users) if inp.prev_users is not None else 0)
    new_items = n_items - (len(inp.prev_items) if inp.prev_items is not None else 0)
    user_deg = np.bincount(eu, minlength=n_users)
    gate, stats = check_graph(
        eu, ei, b.edge_weight, n_users, n_items, b.type_counts, inp.prev_stats, cfg.gate
    )
    report_at = report or report_uri(b.lake, GRAPH, as_of)
    write_gate_report(
        report_at,
        gate.model_copy(
            update={
                "day": as_of,
                "subject": out,
                "counts": {
                    "users": n_users,
                    "items": n_items,
                    "edges": len(eu),
                    "holdout_days": w.holdout_span,
                    "holdout_pairs": len(hu),
                },
                "notes": [f"holdout: {size.why}"] if cfg.holdout_days else [],
            }
        ),
        config=cfg.gate.model_dump(mode="json"),
        extra={"as_of": as_of.isoformat()},
    )
    enforce(gate, out, report_at)
    tick("graph gate passed (%d checks): %s", len(gate.checks), report_at)

    feats, served = b.feats, b.served
    snapshot = GraphSnapshot(
        uri=out,
        as_of=as_of,
        user_ids=b.user_ids,
        item_ids=b.item_ids,
        train_user=eu,
        train_item=ei,
        train_weight=b.edge_weight,
        train_types=b.edge_types,
        holdout_user=hu,
        holdout_item=b.holdout_item,
        user_features=feats.user_x,
        item_features=feats.item_x,
        feature_spec=feats.spec,
        items=pd.DataFrame(
            {
                "item_idx": np.arange(n_items, dtype=np.int64),
                "item_id": b.item_ids.astype(str),
                "category": feats.item_frame["category"].to_numpy(),
                "price": feats.item_frame["price"].to_numpy(),
            }
        ),
        history=served,
    )
    counts: dict[str, int | float] = {
        "users": n_users,
        "items": n_items,
        "edges": len(eu),
        "active_users": int((user_deg > 0).sum()),
        "active_items": int((np.bincount(ei, minlength=n_items) > 0).sum()),
        "new_users": new_users,
        "new_items": new_items,
        "events_read": b.events_read,
        "events_outside_window": b.events_read - b.events_in_window,
        "train_events": b.train_events,
        "holdout_events": b.holdout_events,
        "holdout_days": w.holdout_span,
        "holdout_users": len(unique_int(hu)),
        "holdout_pairs": len(hu),
        "history_edges": len(served.user),
        "history_only_users": len(served.extra_user_ids),
        **b.holdout_counts,
        "user_features": int(feats.user_x.shape[1]),
        "item_features": int(feats.item_x.shape[1]),
    }
    write_snapshot(
        out,
        snapshot,
        stats=stats,
        gate=gate,
        config=cfg,
        inputs=inp.refs,
        counts=counts,
        extra={
            "window_start": w.start.isoformat(),
            "holdout_start": w.holdout_start.isoformat(),
            "holdout_target_met": size.target_met,
            "holdout_sizing": size.why,
            "feature_spec": {
                "extended_from_previous": inp.prev_spec is not None
                and cfg.features.evolve == "extend",
                "width_changed": feats.width_changed,
                "changes": feats.changes,
            },
            "cutoff": dt.datetime.fromtimestamp(w.cutoff_us / 1e6, tz=dt.UTC).isoformat(),
            **b.extra,
        },
        before_publish=before_publish,
    )
    tick(
        "published %s: %d users (%d new), %d items (%d new), %d edges, %d holdout pairs",
        out,
        n_users,
        new_users,
        n_items,
        new_items,
        len(eu),
        len(hu),
    )
    return out
