"""``recsys build-graph``: a point-in-time graph snapshot from the lake.

:func:`build` runs named stages, each vectorised over whole columns: read the
window's event partitions (hashing them) and the dimension tables, split train /
holdout by time, extend the id maps of the previous snapshot, weight and
aggregate the train edges, derive node features, pick the holdout positives and
the served history, run the graph gate, and publish through
:func:`recsys.graph.snapshot.write_snapshot`, the snapshot format's one writer.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.artifacts import InputRef, manifest_sha256
from recsys.data.lake import latest_partition_on_or_before, list_partitions
from recsys.data.schema import EVENT_TYPES, EVENTS, ITEMS, USERS
from recsys.errors import GateFailed, InputError
from recsys.graph.config import GraphConfig
from recsys.graph.features import (
    ITEM_CATEGORICAL,
    ITEM_NUMERIC,
    USER_CATEGORICAL,
    USER_NUMERIC,
    FeatureSpec,
    extend_table,
    fit_table,
)
from recsys.graph.gate import GraphStats, check_graph, enforce
from recsys.graph.idmap import check_prefix, extend_ids, index_of
from recsys.graph.inputs import Events, read_dimension, read_events
from recsys.graph.snapshot import (
    GraphSnapshot,
    ServedHistory,
    load_feature_spec,
    load_id_maps,
    previous_snapshot,
    read_stats,
    snapshot_uri,
    write_snapshot,
)
from recsys.graph.weights import (
    PURCHASE_CODE,
    TYPE_CODE,
    US_PER_DAY,
    aggregate_pairs,
    event_weights,
    saturate,
)
from recsys.logs import get_logger
from recsys.reports import GRAPH, report_uri, write_gate_report

log = get_logger("graph.build")
_EPOCH = dt.date(1970, 1, 1)


def day_start_us(day: dt.date) -> int:
    """Microseconds since the epoch at 00:00 UTC of ``day``."""
    return (day - _EPOCH).days * US_PER_DAY


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


def unique_int(x: np.ndarray) -> np.ndarray:
    """Sorted unique values of an integer array (sort-based: numpy's hash unique is slower)."""
    s = np.sort(x)
    if len(s) == 0:
        return s
    out: np.ndarray = s[np.concatenate(([True], s[1:] != s[:-1]))]
    return out


def present(codes: np.ndarray, size: int) -> np.ndarray:
    """Sorted distinct values of ``codes`` in ``[0, size)``, in O(n) with a bincount."""
    return np.flatnonzero(np.bincount(codes, minlength=size))


class _Timer:
    def __init__(self, as_of: dt.date) -> None:
        self.t0 = time.perf_counter()
        self.as_of = as_of

    def __call__(self, msg: str, *args: Any) -> None:
        log.info("graph %s [%.1fs] " + msg, self.as_of, time.perf_counter() - self.t0, *args)


def _per_group_max(values: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    if len(starts) == 0:
        return np.zeros(0, values.dtype)
    out: np.ndarray = np.maximum.reduceat(values[order], starts)
    return out


def _dimension_columns(
    ids: np.ndarray,
    table: pd.DataFrame | None,
    key: str,
    ref_day: dt.date,
    numeric: tuple[str, ...],
    categorical: tuple[str, ...],
    dates: dict[str, str],
) -> dict[str, np.ndarray]:
    """Columns of a dimension table aligned to ``ids`` (missing rows stay NaN / None).

    ``dates`` maps a date column to the output name of its age in days at ``ref_day``.
    """
    n = len(ids)
    out: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in numeric}
    out.update({c: np.full(n, None, dtype=object) for c in categorical})
    out.update({name: np.full(n, np.nan) for name in dates.values()})
    if table is None or not len(table):
        return out
    pos = index_of(ids, table[key].to_numpy(dtype=object))
    keep = pos >= 0
    sub, at = table[keep], pos[keep]
    for c in numeric:
        out[c][at] = pd.to_numeric(sub[c], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    for c in categorical:
        out[c][at] = sub[c].astype(object).where(sub[c].notna(), None).to_numpy()
    for c, name in dates.items():
        when = pd.to_datetime(sub[c], errors="coerce")
        out[name][at] = ((pd.Timestamp(ref_day) - when).dt.days).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    return out


def _user_frame(
    user_ids: np.ndarray,
    users: pd.DataFrame | None,
    ref_day: dt.date,
    n_events: np.ndarray,
    n_purchases: np.ndarray,
    days_since_last: np.ndarray,
) -> pd.DataFrame:
    cols = _dimension_columns(
        user_ids, users, "user_id", ref_day, ("age",), ("country",), {"signup_date": "tenure_days"}
    )
    return pd.DataFrame(
        {
            "age": cols["age"],
            "country": cols["country"],
            "tenure_days": cols["tenure_days"],
            "n_events": n_events.astype(np.float64),
            "n_purchases": n_purchases.astype(np.float64),
            "days_since_last_event": days_since_last,
        }
    )


def _item_frame(
    item_ids: np.ndarray,
    items: pd.DataFrame | None,
    ref_day: dt.date,
    n_events: np.ndarray,
    n_users: np.ndarray,
    n_purchases: np.ndarray,
) -> pd.DataFrame:
    cols = _dimension_columns(
        item_ids,
        items,
        "item_id",
        ref_day,
        ("price", "rating"),
        ("category",),
        {"created_date": "age_days"},
    )
    return pd.DataFrame(
        {
            "price": cols["price"],
            "rating": cols["rating"],
            "category": cols["category"],
            "age_days": cols["age_days"],
            "n_events": n_events.astype(np.float64),
            "n_users": n_users.astype(np.float64),
            "n_purchases": n_purchases.astype(np.float64),
        }
    )


def _holdout(
    ev: Events,
    mask: np.ndarray,
    user_lookup: np.ndarray,
    item_lookup: np.ndarray,
    user_deg: np.ndarray,
    train_key: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Unique holdout pairs not in train, with users that have train edges and mapped items."""
    n_vocab_items = max(len(ev.item_vocab), 1)
    code_key = unique_int(ev.user[mask] * np.int64(n_vocab_items) + ev.item[mask])
    hu = user_lookup[code_key // n_vocab_items]
    hi = item_lookup[code_key % n_vocab_items]
    known_user = hu >= 0
    known_user[known_user] = user_deg[hu[known_user]] > 0
    known_item = hi >= 0
    keep = known_user & known_item
    key = hu[keep] * np.int64(n_items) + hi[keep]
    pos = np.searchsorted(train_key, key)
    in_train = (pos < len(train_key)) & (
        train_key[np.minimum(pos, max(len(train_key) - 1, 0))] == key
    )
    if len(train_key) == 0:
        in_train = np.zeros(len(key), dtype=bool)
    key = np.sort(key[~in_train])
    counts = {
        "holdout_candidate_pairs": len(code_key),
        "holdout_dropped_unknown_user": int((~known_user).sum()),
        "holdout_dropped_unknown_item": int((known_user & ~known_item).sum()),
        "holdout_dropped_in_train": int(in_train.sum()),
    }
    return key // n_items, key % n_items, counts


def _pair_types(type_code: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Bitmask of each pair's event types (bit k = EVENT_TYPES[k]); serving and export use it."""
    if len(starts) == 0:
        return np.zeros(0, np.int16)
    bits = (np.int16(1) << type_code.astype(np.int16))[order]
    out: np.ndarray = np.bitwise_or.reduceat(bits, starts).astype(np.int16)
    return out


def _served_history(
    ev: Events,
    in_window: np.ndarray,
    user_lookup: np.ndarray,
    item_lookup: np.ndarray,
    n_users: int,
    n_items: int,
    cutoff_us: int,
    cfg: GraphConfig,
) -> ServedHistory:
    """Every user's history through the end of the as-of day, holdout days included.

    The holdout exists for the model gate, not to hide a shopper's latest interactions
    from serving: the bundle serves these edges (the fold-in makes any history exact to
    score). Weights follow the train edges' rule (same decay reference, same saturation).
    Users first seen in the holdout days get indices after the model's ``n_users``, in
    id order (``extra_user_ids``). Events naming an unmapped item
    are left out (serving could not score them either).
    """
    mask = in_window & (item_lookup[ev.item] >= 0)
    u_code, i_code = ev.user[mask], ev.item[mask]
    su = user_lookup[u_code]
    new = su < 0
    extra_ids = ev.user_vocab[present(u_code[new], len(ev.user_vocab))].astype(str)
    if len(extra_ids):
        su = su.copy()
        su[new] = n_users + index_of(extra_ids.astype(object), ev.user_vocab)[u_code[new]]
    ts = ev.ts_us[mask]
    raw = event_weights(
        ev.type_code[mask], ev.value[mask], (cutoff_us - ts) / US_PER_DAY, cfg.weights
    )
    hu, hi, summed, order, starts = aggregate_pairs(su, item_lookup[i_code], raw, n_items)
    return ServedHistory(
        user=hu,
        item=hi,
        weight=saturate(summed, cfg.weights).astype(np.float32),
        types=_pair_types(ev.type_code[mask], order, starts),
        extra_user_ids=extra_ids,
    )


def _snapshot_root(out: str) -> str:
    head = out.rstrip("/").rpartition("/")[0]
    return head or "."


@dataclass(frozen=True)
class Window:
    """The days a snapshot covers: ``[start, as_of]``, the last :attr:`holdout_span` held out
    (the span is sized on the data: :func:`size_holdout`)."""

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


@dataclass(frozen=True)
class HoldoutSize:
    """How the holdout was sized: its span and what it holds (see :func:`size_holdout`)."""

    span: int
    users: int
    pairs: int
    target_met: bool
    why: str
    """Why the holdout stopped growing where it did."""


def size_holdout(inp: Inputs, w: Window, cfg: GraphConfig) -> tuple[Window, HoldoutSize]:
    """Stage 2: grow the holdout back from the as-of day until it holds enough to decide.

    The span starts at ``holdout_days`` and grows a day at a time until the holdout holds
    at least ``holdout_min_users`` users and ``holdout_min_pairs`` pairs, up to
    ``holdout_max_days`` (and never past the day where it would hold more than
    ``holdout_max_event_share`` of the window's events, nor to the window's first day).
    What a span ``d`` holds is counted exactly as :func:`_holdout` will pick the pairs: a
    pair counts when its user has an event before the holdout (train edges), its product
    is mapped (the previous snapshot's or the as-of catalogue's, or seen before the
    holdout), it has an event of a holdout type, and no event of it is before the holdout.
    """
    if cfg.holdout_days == 0:
        return Window.of(w.as_of, cfg, 0), HoldoutSize(0, 0, 0, True, "holdout disabled")
    ev = inp.events
    in_window = (ev.ts_us >= w.start_us) & (ev.ts_us < w.cutoff_us)
    day = ev.ts_us[in_window] // US_PER_DAY
    user, item = ev.user[in_window], ev.item[in_window]
    n_u, n_i = max(len(ev.user_vocab), 1), max(len(ev.item_vocab), 1)
    never = np.iinfo(np.int64).max
    u_first = np.full(n_u, never, dtype=np.int64)
    np.minimum.at(u_first, user, day)
    i_first = np.full(n_i, never, dtype=np.int64)
    np.minimum.at(i_first, item, day)
    known = known_items(inp, cfg)
    if known is not None and len(ev.item_vocab):
        mapped = pd.Index(np.asarray(ev.item_vocab, dtype=object)).isin(known)
        i_first[: len(mapped)][mapped] = np.iinfo(np.int64).min
    hold_types = np.array([TYPE_CODE[t] for t in cfg.holdout_event_types], dtype=np.int8)
    key = user * np.int64(n_i) + item
    order = np.argsort(key, kind="stable")
    key_s = key[order]
    starts = (
        np.flatnonzero(np.concatenate(([True], key_s[1:] != key_s[:-1])))
        if len(key_s)
        else np.zeros(0, np.int64)
    )
    p_first = np.minimum.reduceat(day[order], starts) if len(starts) else day[:0]
    p_pos = (
        (
            np.maximum.reduceat(
                np.isin(ev.type_code[in_window], hold_types)[order].astype(np.int8), starts
            )
            > 0
        )
        if len(starts)
        else day[:0] > 0
    )
    p_key = key_s[starts]
    p_first, p_key = p_first[p_pos], p_key[p_pos]
    p_user, p_item = p_key // n_i, p_key % n_i
    pu_first, pi_first = u_first[p_user], i_first[p_item]
    day_sorted = np.sort(day)

    def share(first: int) -> float:
        return float(
            (len(day_sorted) - np.searchsorted(day_sorted, first)) / max(len(day_sorted), 1)
        )

    def holds(first: int) -> tuple[int, int]:
        ok = (p_first >= first) & (pu_first < first) & (pi_first < first)
        return int((np.bincount(p_user[ok], minlength=n_u) > 0).sum()), int(ok.sum())

    return choose_holdout_span(w, cfg, share, holds)


def holdout_span_range(cfg: GraphConfig) -> range:
    """The spans :func:`size_holdout` tries: ``holdout_days`` up to ``holdout_max_days``
    (never the whole window)."""
    max_span = min(max(cfg.holdout_max_days, cfg.holdout_days), cfg.window_days - 1)
    return range(cfg.holdout_days, max_span + 1)


def choose_holdout_span(
    w: Window,
    cfg: GraphConfig,
    share: Callable[[int], float],
    holds: Callable[[int], tuple[int, int]],
) -> tuple[Window, HoldoutSize]:
    """The sizing rule of :func:`size_holdout`, for either engine: ``share(first)`` is the
    share of the window's events on or after day number ``first`` (days since the epoch),
    ``holds(first)`` the ``(users, pairs)`` a holdout starting that day holds."""
    as_of_day = (w.as_of - _EPOCH).days
    spans = holdout_span_range(cfg)
    max_span = spans.stop - 1
    span, users, pairs, why = cfg.holdout_days, 0, 0, ""
    for d in spans:
        first = as_of_day - d + 1
        if d > cfg.holdout_days and (frac := share(first)) > cfg.holdout_max_event_share:
            why = (
                f"stopped at {span} day(s): {d} would hold {frac:.0%} of the window's "
                f"events (holdout_max_event_share {cfg.holdout_max_event_share:g})"
            )
            break
        span = d
        users, pairs = holds(first)
        if users >= cfg.holdout_min_users and pairs >= cfg.holdout_min_pairs:
            why = f"{users} users and {pairs} pairs in {d} day(s) reach the targets"
            break
    else:
        why = (
            f"stopped at holdout_max_days: {max_span} day(s)"
            if max_span > cfg.holdout_days
            else f"holdout_days={cfg.holdout_days}"
        )
    met = users >= cfg.holdout_min_users and pairs >= cfg.holdout_min_pairs
    if not met:
        why += (
            f"; holds {users} users and {pairs} pairs, short of the targets "
            f"{cfg.holdout_min_users} / {cfg.holdout_min_pairs}"
        )
    return Window.of(w.as_of, cfg, span), HoldoutSize(span, users, pairs, met, why)


@dataclass
class IdMaps:
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_lookup: np.ndarray
    """Snapshot index of each event user code (-1: not mapped)."""
    item_lookup: np.ndarray


def extend_id_maps(inp: Inputs, split: Split, cfg: GraphConfig) -> IdMaps:
    """Stage 4: the previous snapshot's id maps with this window's new train users and
    products appended (and the as-of catalogue's products, for cold start)."""
    ev = inp.events
    seen_items = ev.item_vocab[present(ev.item[split.train], len(ev.item_vocab))]
    if cfg.include_catalog_items and inp.items is not None:
        seen_items = np.concatenate([seen_items, inp.items["item_id"].to_numpy(dtype=object)])
    train_users = ev.user_vocab[present(ev.user[split.train], len(ev.user_vocab))]
    user_ids = extend_ids(inp.prev_users, train_users)
    item_ids = extend_ids(inp.prev_items, seen_items)
    if inp.prev_users is not None and inp.prev_items is not None:
        check_prefix(inp.prev_users, user_ids, "user")
        check_prefix(inp.prev_items, item_ids, "item")
    return IdMaps(
        user_ids, item_ids, index_of(user_ids, ev.user_vocab), index_of(item_ids, ev.item_vocab)
    )


@dataclass
class TrainEdges:
    """Unique (user, product) train pairs with their weights and event-type bitmasks, and
    the per-event indices the behavioural features are counted from."""

    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    types: np.ndarray
    event_user: np.ndarray
    event_item: np.ndarray
    event_type: np.ndarray
    pair_last_us: np.ndarray
    """Latest event of each pair."""


def weigh_train_edges(
    ev: Events, split: Split, ids: IdMaps, w: Window, cfg: GraphConfig
) -> TrainEdges:
    """Stage 5: per pair, the saturated sum of decayed per-type event weights."""
    ts = ev.ts_us[split.train]
    tu = ids.user_lookup[ev.user[split.train]]
    ti = ids.item_lookup[ev.item[split.train]]
    t_type = ev.type_code[split.train]
    raw = event_weights(t_type, ev.value[split.train], (w.cutoff_us - ts) / US_PER_DAY, cfg.weights)
    eu, ei, summed, order, starts = aggregate_pairs(tu, ti, raw, len(ids.item_ids))
    return TrainEdges(
        user=eu,
        item=ei,
        weight=saturate(summed, cfg.weights).astype(np.float32),
        types=_pair_types(t_type, order, starts),
        event_user=tu,
        event_item=ti,
        event_type=t_type,
        pair_last_us=_per_group_max(ts, order, starts),
    )


@dataclass
class Features:
    spec: FeatureSpec
    user_x: np.ndarray
    item_x: np.ndarray
    item_frame: pd.DataFrame
    """The raw item columns (category and price feed the serving filters)."""
    changes: list[str]
    """How the encoding differs from the previous snapshot's (empty: the same columns)."""
    width_changed: bool


def node_features(
    inp: Inputs, ids: IdMaps, edges: TrainEdges, w: Window, cfg: GraphConfig
) -> Features:
    """Stage 6: node features, fitted and encoded. Behavioural features come from the
    train period only, so the holdout cannot leak into them."""
    n_users, n_items = len(ids.user_ids), len(ids.item_ids)
    eu, tu, ti = edges.user, edges.event_user, edges.event_item
    user_starts = np.flatnonzero(np.concatenate(([True], eu[1:] != eu[:-1]))) if len(eu) else eu
    last_ts = np.full(n_users, np.nan)
    if len(eu):
        last_ts[eu[user_starts]] = np.maximum.reduceat(edges.pair_last_us, user_starts)
    is_purchase = edges.event_type == PURCHASE_CODE
    return encode_features(
        inp,
        ids.user_ids,
        ids.item_ids,
        w,
        cfg,
        NodeCounts(
            user_events=np.bincount(tu, minlength=n_users),
            user_purchases=np.bincount(tu[is_purchase], minlength=n_users),
            user_last_us=last_ts,
            item_events=np.bincount(ti, minlength=n_items),
            item_users=np.bincount(edges.item, minlength=n_items),
            item_purchases=np.bincount(ti[is_purchase], minlength=n_items),
        ),
    )


@dataclass
class NodeCounts:
    """The behavioural figures of the train period per node (what an engine aggregates from
    the events; :func:`encode_features` turns them into features)."""

    user_events: np.ndarray
    user_purchases: np.ndarray
    user_last_us: np.ndarray
    """float64, NaN for a user without a train event."""
    item_events: np.ndarray
    item_users: np.ndarray
    item_purchases: np.ndarray


def encode_features(
    inp: Inputs,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    w: Window,
    cfg: GraphConfig,
    counts: NodeCounts,
) -> Features:
    """Node features of either engine from the dimension tables and the train-period counts:
    raw frames, the spec fitted (or the previous snapshot's extended), the encoding."""
    ufr = _user_frame(
        user_ids,
        inp.users,
        w.holdout_start,
        counts.user_events,
        counts.user_purchases,
        (w.holdout_us - counts.user_last_us) / US_PER_DAY,
    )
    ifr = _item_frame(
        item_ids,
        inp.items,
        w.holdout_start,
        counts.item_events,
        counts.item_users,
        counts.item_purchases,
    )
    fc = cfg.features
    prev = inp.prev_spec
    changes: list[str] = []
    if prev is not None and fc.evolve == "extend":
        users, cu = extend_table(
            prev.users,
            ufr,
            USER_NUMERIC,
            USER_CATEGORICAL,
            fc.max_vocab,
            fc.min_count,
            fc.grow_vocab,
        )
        items, ci = extend_table(
            prev.items,
            ifr,
            ITEM_NUMERIC,
            ITEM_CATEGORICAL,
            fc.max_vocab,
            fc.min_count,
            fc.grow_vocab,
        )
        changes = [f"users {c}" for c in cu] + [f"items {c}" for c in ci]
    else:
        users = fit_table(ufr, USER_NUMERIC, USER_CATEGORICAL, fc.max_vocab, fc.min_count)
        items = fit_table(ifr, ITEM_NUMERIC, ITEM_CATEGORICAL, fc.max_vocab, fc.min_count)
        if prev is not None:
            changes = ["refitted (features.evolve = refit)"]
    spec = FeatureSpec(users=users, items=items)
    width_changed = prev is not None and not spec.same_shape(prev)
    if width_changed and prev is not None:
        log.warning(
            "graph %s: feature width changed (users %d -> %d, items %d -> %d): the next "
            "training starts cold; %s",
            w.as_of,
            prev.users.width,
            users.width,
            prev.items.width,
            items.width,
            "; ".join(changes),
        )
    elif changes:
        log.info("graph %s: feature encoding changes: %s", w.as_of, "; ".join(changes))
    return Features(
        spec, spec.encode_users(ufr), spec.encode_items(ifr), ifr, changes, width_changed
    )


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
    tick = _Timer(as_of)
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
    hu, hi, hcounts = _holdout(
        ev,
        hmask,
        ids.user_lookup,
        ids.item_lookup,
        user_deg,
        eu * np.int64(len(ids.item_ids)) + ei,
        len(ids.item_ids),
    )
    served = _served_history(
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
