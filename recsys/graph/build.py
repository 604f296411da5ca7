"""Build a point-in-time graph snapshot from the lake (see :mod:`recsys.graph.snapshot`).

Stages, each vectorised over whole columns: read the window's event
partitions (hashing them), split train / holdout by time, extend the id maps
of the previous snapshot, weight and aggregate edges, derive node features,
run the graph gate, and publish everything atomically with a manifest.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.artifacts import InputRef, manifest_sha256, write_artifact
from recsys.data.lake import latest_partition_on_or_before, list_partitions
from recsys.data.schema import EVENT_TYPES, EVENTS, ITEMS, USERS
from recsys.errors import GateFailed, InputError
from recsys.graph import snapshot as snap
from recsys.graph.config import GraphConfig
from recsys.graph.features import (
    ITEM_CATEGORICAL,
    ITEM_NUMERIC,
    USER_CATEGORICAL,
    USER_NUMERIC,
    FeatureSpec,
    fit_table,
)
from recsys.graph.gate import GraphStats, check_graph, enforce
from recsys.graph.idmap import check_prefix, extend_ids, index_of
from recsys.graph.inputs import Events, read_dimension, read_events
from recsys.graph.weights import (
    PURCHASE_CODE,
    TYPE_CODE,
    US_PER_DAY,
    aggregate_pairs,
    event_weights,
    saturate,
)
from recsys.logs import get_logger
from recsys.storage import get_fs

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
        late = int((ts_us >= limit_us).sum())
        first = dt.datetime.fromtimestamp(int(ts_us.max()) / 1e6, tz=dt.UTC).isoformat()
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


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def _write(uri: str, data: bytes) -> None:
    fs, path = get_fs(uri)
    with fs.open(path, "wb") as f:
        f.write(data)


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
) -> tuple[pa.Table, np.ndarray]:
    """Every user's history through the end of the as-of day, holdout days included.

    The holdout exists for the model gate, not to hide a shopper's latest interactions
    from serving: the bundle serves these edges (the fold-in makes any history exact to
    score). Weights follow the train edges' rule (same decay reference, same saturation).
    Users first seen in the holdout days get indices after the model's ``n_users``, in
    id order; they are returned as ``extra_user_ids``. Events naming an unmapped item
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
    raw = event_weights(ev.type_code[mask], ev.value[mask], (cutoff_us - ts) / US_PER_DAY,
                        cfg.weights)
    hu, hi, summed, order, starts = aggregate_pairs(su, item_lookup[i_code], raw, n_items)
    table = pa.table({
        "user_idx": hu,
        "item_idx": hi,
        "weight": saturate(summed, cfg.weights).astype(np.float32),
        "types": _pair_types(ev.type_code[mask], order, starts),
    })
    return table, extra_ids


def _snapshot_root(out: str) -> str:
    head = out.rstrip("/").rpartition("/")[0]
    return head or "."


def build(
    lake: str,
    as_of: dt.date,
    cfg: GraphConfig,
    out: str,
    _before_publish: Callable[[str], None] | None = None,
) -> str:
    """Build, gate and publish the snapshot of ``as_of`` at ``out``; returns ``out``."""
    tick = _Timer(as_of)
    window_start = as_of - dt.timedelta(days=cfg.window_days - 1)
    holdout_start = (
        as_of - dt.timedelta(days=cfg.holdout_days - 1)
        if cfg.holdout_days
        else as_of + dt.timedelta(days=1)
    )
    cutoff_us = day_start_us(as_of + dt.timedelta(days=1))
    hs_us = day_start_us(holdout_start)
    ws_us = day_start_us(window_start)

    days = [d for d in list_partitions(lake, EVENTS) if window_start <= d <= as_of]
    if not days:
        raise InputError(f"{lake}/{EVENTS}: no events partition between {window_start} and {as_of}")
    ev, inputs = read_events(lake, days)
    tick("read %d events from %d partitions", len(ev), len(days))

    in_window = (ev.ts_us >= ws_us) & (ev.ts_us < cutoff_us)
    train = in_window & (ev.ts_us < hs_us)
    hold = in_window & (ev.ts_us >= hs_us)
    ts_train = ev.ts_us[train]
    assert_point_in_time(ts_train, hs_us, "train")
    assert_point_in_time(ev.ts_us[hold], cutoff_us, "holdout")
    t_user_code = ev.user[train]
    t_item_code = ev.item[train]
    t_type = ev.type_code[train]

    prev_uri = snap.previous_snapshot(_snapshot_root(out), as_of)
    users_df = items_df = None
    users_day = latest_partition_on_or_before(lake, USERS, as_of)
    if users_day is not None:
        users_df, inputs[f"{USERS}/dt={users_day.isoformat()}"] = read_dimension(
            lake, USERS, users_day
        )
    items_day = latest_partition_on_or_before(lake, ITEMS, as_of)
    if items_day is not None:
        items_df, inputs[f"{ITEMS}/dt={items_day.isoformat()}"] = read_dimension(
            lake, ITEMS, items_day
        )

    prev_users = prev_items = None
    prev_stats = None
    if prev_uri is not None:
        prev_users, prev_items = snap.load_id_maps(prev_uri)
        prev_stats = GraphStats.from_dict(snap.read_stats(prev_uri)["graph"])
        inputs["previous_snapshot"] = InputRef(uri=prev_uri, sha256=manifest_sha256(prev_uri))
    seen_items = ev.item_vocab[present(t_item_code, len(ev.item_vocab))]
    if cfg.include_catalog_items and items_df is not None:
        seen_items = np.concatenate([seen_items, items_df["item_id"].to_numpy(dtype=object)])
    user_ids = extend_ids(prev_users, ev.user_vocab[present(t_user_code, len(ev.user_vocab))])
    item_ids = extend_ids(prev_items, seen_items)
    if prev_users is not None and prev_items is not None:
        check_prefix(prev_users, user_ids, "user")
        check_prefix(prev_items, item_ids, "item")
    n_users, n_items = len(user_ids), len(item_ids)
    user_lookup = index_of(user_ids, ev.user_vocab)
    item_lookup = index_of(item_ids, ev.item_vocab)
    tick(
        "id maps: %d users (%d new), %d items (%d new)",
        n_users,
        n_users - (len(prev_users) if prev_users is not None else 0),
        n_items,
        n_items - (len(prev_items) if prev_items is not None else 0),
    )

    tu = user_lookup[t_user_code]
    ti = item_lookup[t_item_code]
    raw = event_weights(t_type, ev.value[train], (cutoff_us - ts_train) / US_PER_DAY, cfg.weights)
    eu, ei, summed, order, starts = aggregate_pairs(tu, ti, raw, n_items)
    weight = saturate(summed, cfg.weights).astype(np.float32)
    tick("aggregated %d train events into %d edges", len(tu), len(eu))

    # behavioural features come from the train period only, so the holdout cannot leak into them
    pair_last = _per_group_max(ts_train, order, starts)
    pair_types = _pair_types(t_type, order, starts)
    user_starts = np.flatnonzero(np.concatenate(([True], eu[1:] != eu[:-1]))) if len(eu) else eu
    last_ts = np.full(n_users, np.nan)
    if len(eu):
        last_ts[eu[user_starts]] = np.maximum.reduceat(pair_last, user_starts)
    is_purchase = t_type == PURCHASE_CODE
    user_deg = np.bincount(eu, minlength=n_users)
    ufr = _user_frame(
        user_ids,
        users_df,
        holdout_start,
        np.bincount(tu, minlength=n_users),
        np.bincount(tu[is_purchase], minlength=n_users),
        (hs_us - last_ts) / US_PER_DAY,
    )
    ifr = _item_frame(
        item_ids,
        items_df,
        holdout_start,
        np.bincount(ti, minlength=n_items),
        np.bincount(ei, minlength=n_items),
        np.bincount(ti[is_purchase], minlength=n_items),
    )
    fc = cfg.features
    spec = FeatureSpec(
        users=fit_table(ufr, USER_NUMERIC, USER_CATEGORICAL, fc.max_vocab, fc.min_count),
        items=fit_table(ifr, ITEM_NUMERIC, ITEM_CATEGORICAL, fc.max_vocab, fc.min_count),
    )
    user_x = spec.encode_users(ufr)
    item_x = spec.encode_items(ifr)
    tick("features: users %s, items %s", user_x.shape, item_x.shape)

    hold_types = np.array([TYPE_CODE[t] for t in cfg.holdout_event_types], dtype=np.int8)
    hmask = hold & np.isin(ev.type_code, hold_types)
    hu, hi, hcounts = _holdout(
        ev, hmask, user_lookup, item_lookup, user_deg, eu * np.int64(n_items) + ei, n_items
    )

    served, extra_users = _served_history(
        ev, in_window, user_lookup, item_lookup, n_users, n_items, cutoff_us, cfg
    )
    tick("served history: %d edges, %d user(s) first seen in the holdout days",
         served.num_rows, len(extra_users))

    type_counts = np.bincount(t_type, minlength=len(EVENT_TYPES))
    report, stats = check_graph(eu, ei, weight, n_users, n_items, type_counts, prev_stats, cfg.gate)
    enforce(report, out)
    tick("graph gate passed (%d checks)", len(report.checks))

    items_table = pa.table(
        {
            "item_idx": np.arange(n_items, dtype=np.int64),
            "item_id": pa.array(item_ids.astype(str), pa.string()),
            "category": pa.array(ifr["category"], pa.string(), from_pandas=True),
            "price": pa.array(ifr["price"].to_numpy(), pa.float64(), from_pandas=True),
        }
    )
    counts: dict[str, int | float] = {
        "users": n_users,
        "items": n_items,
        "edges": len(eu),
        "active_users": int((user_deg > 0).sum()),
        "active_items": int((np.bincount(ei, minlength=n_items) > 0).sum()),
        "new_users": n_users - (len(prev_users) if prev_users is not None else 0),
        "new_items": n_items - (len(prev_items) if prev_items is not None else 0),
        "events_read": len(ev),
        "events_outside_window": int(len(ev) - in_window.sum()),
        "train_events": len(tu),
        "holdout_events": int(hold.sum()),
        "holdout_pairs": len(hu),
        "history_edges": served.num_rows,
        "history_only_users": len(extra_users),
        **hcounts,
        "user_features": int(user_x.shape[1]),
        "item_features": int(item_x.shape[1]),
    }
    with write_artifact(out, snap.KIND) as draft:
        _write(
            draft.path(snap.USER_IDS),
            _parquet_bytes(
                pa.table(
                    {
                        "user_idx": np.arange(n_users, dtype=np.int64),
                        "user_id": pa.array(user_ids.astype(str), pa.string()),
                    }
                )
            ),
        )
        _write(
            draft.path(snap.ITEM_IDS),
            _parquet_bytes(
                pa.table(
                    {
                        "item_idx": np.arange(n_items, dtype=np.int64),
                        "item_id": pa.array(item_ids.astype(str), pa.string()),
                    }
                )
            ),
        )
        _write(
            draft.path(snap.EDGES),
            _parquet_bytes(
                pa.table({"user_idx": eu, "item_idx": ei, "weight": weight, "types": pair_types})
            ),
        )
        _write(draft.path(snap.HOLDOUT), _parquet_bytes(pa.table({"user_idx": hu, "item_idx": hi})))
        _write(draft.path(snap.HISTORY), _parquet_bytes(served))
        _write(
            draft.path(snap.HISTORY_USERS),
            _parquet_bytes(
                pa.table(
                    {
                        "user_idx": np.arange(n_users, n_users + len(extra_users), dtype=np.int64),
                        "user_id": pa.array(extra_users, pa.string()),
                    }
                )
            ),
        )
        _write(draft.path(snap.USER_FEATURES), _npy_bytes(user_x))
        _write(draft.path(snap.ITEM_FEATURES), _npy_bytes(item_x))
        _write(draft.path(snap.FEATURE_SPEC), spec.to_json().encode())
        _write(draft.path(snap.ITEMS), _parquet_bytes(items_table))
        stats_doc = {"graph": stats.to_dict(), "gate": report.to_dict()}
        _write(
            draft.path(snap.STATS),
            (json.dumps(stats_doc, indent=2, sort_keys=True) + "\n").encode(),
        )
        if _before_publish is not None:
            _before_publish(draft.uri)
        draft.inputs = dict(sorted(inputs.items()))
        draft.counts = counts
        draft.config = cfg.model_dump(mode="json")
        draft.extra = {
            "as_of": as_of.isoformat(),
            "window_start": window_start.isoformat(),
            "holdout_start": holdout_start.isoformat(),
            "cutoff": dt.datetime.fromtimestamp(cutoff_us / 1e6, tz=dt.UTC).isoformat(),
        }
    tick(
        "published %s: %d users, %d items, %d edges, %d holdout pairs",
        out,
        n_users,
        n_items,
        len(eu),
        len(hu),
    )
    return out
