"""Stages 4-6 of the build: the id maps extended, the train edges weighed and aggregated,
the node features fitted (or extended from the previous snapshot's spec) and encoded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.graph.arrays import per_group_max, present
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
from recsys.graph.idmap import check_prefix, extend_ids, index_of
from recsys.graph.inputs import Events
from recsys.graph.weights import (
    PURCHASE_CODE,
    US_PER_DAY,
    aggregate_pairs,
    event_weights,
    pair_types,
    saturate,
)
from recsys.graph.window import Inputs, Split, Window
from recsys.logs import get_logger

log = get_logger("graph.build")


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
        types=pair_types(t_type, order, starts),
        event_user=tu,
        event_item=ti,
        event_type=t_type,
        pair_last_us=per_group_max(ts, order, starts),
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
