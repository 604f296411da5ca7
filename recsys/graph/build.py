"""``recsys build-graph``: a point-in-time graph snapshot from the lake.

:func:`build` runs named stages, each vectorised over whole columns: read the
window's event partitions (hashing them) and the dimension tables, split train /
holdout by time, extend the id maps of the previous snapshot, weight and
aggregate the train edges, derive node features, pick the holdout positives and
the served history, run the graph gate, and publish through
:func:`recsys.graph.snapshot.write_snapshot`, the snapshot format's one writer.

The stages live beside it: :mod:`~recsys.graph.window` (the window, stage 1 and the
time split), :mod:`~recsys.graph.holdout` (the holdout's span, pairs and the served
history), :mod:`~recsys.graph.nodes` (id maps, train edges, node features) and
:mod:`~recsys.graph.publish` (the gate and the writer); the Spark engine
(:mod:`~recsys.graph.spark_build`) reuses them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from recsys.data.schema import EVENT_TYPES
from recsys.graph.config import GraphConfig
from recsys.graph.holdout import holdout_pairs, served_history, size_holdout
from recsys.graph.nodes import extend_id_maps, node_features, weigh_train_edges
from recsys.graph.publish import Built, StageTimer, gate_and_publish
from recsys.graph.snapshot import snapshot_uri
from recsys.graph.weights import TYPE_CODE
from recsys.graph.window import Window, read_inputs, split_by_time


def build(
    lake: str,
    as_of: dt.date,
    cfg: GraphConfig,
    out: str,
    _before_publish: Callable[[str], None] | None = None,
    report: str | None = None,
) -> str:
    """Build, gate and publish the snapshot of ``as_of`` at ``out``; returns ``out``.

    The graph gate's report (``report.json``, pass or fail) goes to ``report`` (default
    ``<lake>/reports/graph/dt=<as_of>``)."""
    tick = StageTimer(as_of)
    w = Window.of(as_of, cfg, cfg.holdout_max_days)
    inp = read_inputs(lake, w, out)
    ev = inp.events
    tick("read %d events", len(ev))
    w, size = size_holdout(inp, w, cfg)
    tick("holdout: %d day(s) from %s; %s", size.span, w.holdout_start, size.why)
    split = split_by_time(ev, w)

    ids = extend_id_maps(inp, split, cfg)
    tick("id maps: %d users, %d items", len(ids.user_ids), len(ids.item_ids))

    edges = weigh_train_edges(ev, split, ids, w, cfg)
    eu, ei = edges.user, edges.item
    tick("aggregated %d train events into %d edges", len(edges.event_user), len(eu))

    feats = node_features(inp, ids, edges, w, cfg)
    tick("features: users %s, items %s", feats.user_x.shape, feats.item_x.shape)

    user_deg = np.bincount(eu, minlength=len(ids.user_ids))
    hold_types = np.array([TYPE_CODE[t] for t in cfg.holdout_event_types], dtype=np.int8)
    hmask = split.hold & np.isin(ev.type_code, hold_types)
    hu, hi, hcounts = holdout_pairs(
        ev,
        hmask,
        ids.user_lookup,
        ids.item_lookup,
        user_deg,
        eu * np.int64(len(ids.item_ids)) + ei,
        len(ids.item_ids),
    )
    served = served_history(
        ev,
        split.in_window,
        ids.user_lookup,
        ids.item_lookup,
        len(ids.user_ids),
        len(ids.item_ids),
        w.cutoff_us,
        cfg,
    )
    tick(
        "served history: %d edges, %d user(s) first seen in the holdout days",
        len(served.user),
        len(served.extra_user_ids),
    )
    return gate_and_publish(
        Built(
            lake=lake,
            out=out,
            cfg=cfg,
            w=w,
            size=size,
            inp=inp,
            user_ids=ids.user_ids,
            item_ids=ids.item_ids,
            edge_user=eu,
            edge_item=ei,
            edge_weight=edges.weight,
            edge_types=edges.types,
            type_counts=np.bincount(edges.event_type, minlength=len(EVENT_TYPES)),
            feats=feats,
            holdout_user=hu,
            holdout_item=hi,
            holdout_counts=hcounts,
            served=served,
            events_read=len(ev),
            events_in_window=int(split.in_window.sum()),
            train_events=len(edges.event_user),
            holdout_events=int(split.hold.sum()),
        ),
        tick,
        report,
        _before_publish,
    )


def build_snapshot(
    lake: str,
    as_of: dt.date,
    config: GraphConfig | None = None,
    out: str | None = None,
    report: str | None = None,
) -> str:
    """Build, gate and publish the snapshot of ``as_of``; returns its URI.

    ``out`` defaults to :func:`recsys.graph.snapshot.snapshot_uri`; the previous snapshot
    (for the id maps and the drift checks) is the latest one before ``as_of`` in the same
    folder. The graph gate's report goes to ``report`` (default: the lake's graph report of
    ``as_of``).
    """
    return build(
        lake, as_of, config or GraphConfig(), out or snapshot_uri(lake, as_of), report=report
    )
