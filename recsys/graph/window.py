"""The days a snapshot covers and what the build reads for them.

:class:`Window` (the as-of day, the window's first day, the holdout's first day), the
point-in-time checks, stage 1 (:func:`read_inputs`: the window's events, the dimension
tables, the previous snapshot) and stage 3 (:func:`split_by_time`). Both engines use them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.artifacts import InputRef, manifest_sha256
from recsys.data.lake import latest_partition_on_or_before, list_partitions
from recsys.data.schema import EVENTS, ITEMS, USERS
from recsys.errors import GateFailed, InputError
from recsys.graph.config import GraphConfig
from recsys.graph.features import FeatureSpec
from recsys.graph.gate import GraphStats
from recsys.graph.inputs import Events, read_dimension, read_events
from recsys.graph.snapshot import (
    load_feature_spec,
    load_id_maps,
    previous_snapshot,
    read_stats,
)
from recsys.graph.weights import US_PER_DAY

EPOCH = dt.date(1970, 1, 1)


def day_start_us(day: dt.date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``day``."""
    return (day - EPOCH).days * US_PER_DAY


def assert_point_in_time(ts_us: np.ndarray, limit_us: int, what: str) -> None:
    """Fail the build if any event used for ``what`` is at or after ``limit_us``.

    The filters above already exclude such events; this is the independent
    check that a later edge can never slip into a snapshot.
    """
    if len(ts_us) and int(ts_us.max()) >= limit_us:
        point_in_time_failed(int((ts_us >= limit_us).sum()), int(ts_us.max()), limit_us, what)


def point_in_time_failed(late: int, latest_us: int, limit_us: int, what: str) -> None:
    """Raise the point-in-time failure: ``late`` events for ``what`` at or after ``limit_us``,
    the latest at ``latest_us`` (either engine counts them its own way)."""
    first = dt.datetime.fromtimestamp(latest_us / 1e6, tz=dt.UTC).isoformat()
    limit = dt.datetime.fromtimestamp(limit_us / 1e6, tz=dt.UTC).isoformat()
    raise GateFailed(
        "graph",
        [f"point_in_time: {late} {what} event(s) at or after {limit}, latest {first}"],
    )


def _snapshot_root(out: str) -> str:
    head = out.rstrip("/").rpartition("/")[0]
    return head or "."


@dataclass(frozen=True)
class Window:
    """The days a snapshot covers: ``[start, as_of]``, the last :attr:`holdout_span` held out
    (the span is sized on the data: :func:`~recsys.graph.holdout.size_holdout`)."""

    as_of: dt.date
    start: dt.date
    holdout_start: dt.date

    @classmethod
    def of(cls, as_of: dt.date, cfg: GraphConfig, span: int | None = None) -> Window:
        """The window of ``as_of`` holding out ``span`` days (default ``holdout_days``)."""
        span = cfg.holdout_days if span is None else span
        holdout_start = as_of - dt.timedelta(days=span - 1)
        return cls(as_of, as_of - dt.timedelta(days=cfg.window_days - 1), holdout_start)

    @property
    def holdout_span(self) -> int:
        """Days held out: ``as_of - holdout_start + 1`` (0: no holdout)."""
        return (self.as_of - self.holdout_start).days + 1

    @property
    def start_us(self) -> int:
        return day_start_us(self.start)

    @property
    def holdout_us(self) -> int:
        return day_start_us(self.holdout_start)

    @property
    def cutoff_us(self) -> int:
        """End of the as-of day (exclusive): nothing at or after it enters the snapshot."""
        return day_start_us(self.as_of + dt.timedelta(days=1))


@dataclass
class Inputs:
    """What the build reads: the window's events, the dimension tables, the previous snapshot."""

    events: Events
    refs: dict[str, InputRef]
    users: pd.DataFrame | None
    items: pd.DataFrame | None
    prev_users: np.ndarray | None
    prev_items: np.ndarray | None
    prev_stats: GraphStats | None
    prev_spec: FeatureSpec | None = None


def window_partitions(lake: str, w: Window) -> list[dt.date]:
    """The events partitions of the window (an error when there is none)."""
    days = [d for d in list_partitions(lake, EVENTS) if w.start <= d <= w.as_of]
    if not days:
        raise InputError(f"{lake}/{EVENTS}: no events partition between {w.start} and {w.as_of}")
    return days


def read_inputs(lake: str, w: Window, out: str) -> Inputs:
    """Stage 1: the window's event partitions, the users / items tables of the as-of day (or
    the latest before it) and the previous snapshot beside ``out``, with content hashes."""
    ev, refs = read_events(lake, window_partitions(lake, w))
    return read_context(lake, w, out, ev, refs)


def read_context(lake: str, w: Window, out: str, ev: Events, refs: dict[str, InputRef]) -> Inputs:
    """The rest of stage 1 for either engine: the dimension tables and the previous snapshot
    (id maps, gate statistics, feature spec), their refs added to the events' ``refs``."""
    tables: dict[str, pd.DataFrame | None] = {USERS: None, ITEMS: None}
    for table in tables:
        day = latest_partition_on_or_before(lake, table, w.as_of)
        if day is not None:
            tables[table], refs[f"{table}/dt={day.isoformat()}"] = read_dimension(lake, table, day)
    prev_users = prev_items = prev_stats = prev_spec = None
    prev_uri = previous_snapshot(_snapshot_root(out), w.as_of)
    if prev_uri is not None:
        prev_users, prev_items = load_id_maps(prev_uri)
        prev_stats = read_stats(prev_uri)
        prev_spec = load_feature_spec(prev_uri)
        refs["previous_snapshot"] = InputRef(uri=prev_uri, sha256=manifest_sha256(prev_uri))
    return Inputs(
        ev, refs, tables[USERS], tables[ITEMS], prev_users, prev_items, prev_stats, prev_spec
    )


def known_items(inp: Inputs, cfg: GraphConfig) -> np.ndarray | None:
    """Products mapped whatever the window holds: the previous snapshot's and, with
    ``include_catalog_items``, the as-of catalogue's (None: neither)."""
    known = [x for x in (inp.prev_items,) if x is not None]
    if cfg.include_catalog_items and inp.items is not None:
        known.append(inp.items["item_id"].to_numpy(dtype=object))
    return np.concatenate(known).astype(object) if known else None


@dataclass
class Split:
    """Event masks: inside the window, its train days, its holdout days."""

    in_window: np.ndarray
    train: np.ndarray
    hold: np.ndarray


def split_by_time(ev: Events, w: Window) -> Split:
    """Stage 3: train and holdout events by time, with the independent point-in-time check."""
    in_window = (ev.ts_us >= w.start_us) & (ev.ts_us < w.cutoff_us)
    train = in_window & (ev.ts_us < w.holdout_us)
    hold = in_window & (ev.ts_us >= w.holdout_us)
    assert_point_in_time(ev.ts_us[train], w.holdout_us, "train")
    assert_point_in_time(ev.ts_us[hold], w.cutoff_us, "holdout")
    return Split(in_window, train, hold)
