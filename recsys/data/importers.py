"""Bring a user's own data into the lake: CSV/Parquet event logs, feature tables, LightGCN splits.

The files are read and checked by :mod:`recsys.data.readers`; this module writes them as
day partitions (each day's events, and the users / items snapshot of that day).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from recsys.data.lake import write_partition
from recsys.data.lightgcn import load_lightgcn
from recsys.data.readers import EventColumns, FeatureColumns, read_events, read_features
from recsys.data.schema import (
    EVENT_TYPES,
    EVENTS,
    EVENTS_SCHEMA,
    ITEMS,
    ITEMS_SCHEMA,
    USERS,
    USERS_SCHEMA,
)
from recsys.errors import InputError

DAY_US = 86_400 * 1_000_000


def _days(ts_us: np.ndarray) -> np.ndarray:
    days: np.ndarray = np.floor_divide(ts_us, DAY_US)
    return days


def _by_day(events: pa.Table) -> Iterator[tuple[dt.date, pa.Table]]:
    """Split events by the UTC day of ``ts``, each sorted by time (then id, for determinism)."""
    ts = events.column("ts").cast(pa.int64()).to_numpy()
    ids = events.column("event_id").to_numpy(zero_copy_only=False)
    order = np.lexsort((ids, ts))
    events = events.take(pa.array(order))
    day = _days(ts[order])
    bounds = np.flatnonzero(np.r_[True, day[1:] != day[:-1], True])
    for lo, hi in itertools.pairwise(bounds):
        yield dt.date(1970, 1, 1) + dt.timedelta(days=int(day[lo])), events.slice(lo, hi - lo)


def _ids_only(ids: np.ndarray, schema: pa.Schema) -> pa.Table:
    """A dimension snapshot with ids and null features (when the user brings no feature table)."""
    n = len(ids)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols[schema.names[0]] = pa.array(ids, pa.string())
    return pa.table(cols, schema=schema)


def _write(
    out: str,
    events: pa.Table,
    users: pa.Table | None,
    items: pa.Table | None,
    desc: str,
) -> tuple[list[dt.date], dict[str, int]]:
    """Write events by day, and the users/items snapshot of each of those days."""
    days: list[dt.date] = []
    seen_u: set[str] = set()
    seen_i: set[str] = set()
    parts = list(_by_day(events))
    for day, part in tqdm(parts, desc=desc, unit="day", disable=None):
        write_partition(out, EVENTS, day, part)
        if users is None:
            seen_u.update(_unique(part, "user_id"))
        if items is None:
            seen_i.update(_unique(part, "item_id"))
        u = (
            users
            if users is not None
            else _ids_only(np.array(sorted(seen_u), dtype=object), USERS_SCHEMA)
        )
        i = (
            items
            if items is not None
            else _ids_only(np.array(sorted(seen_i), dtype=object), ITEMS_SCHEMA)
        )
        write_partition(out, USERS, day, u)
        write_partition(out, ITEMS, day, i)
        days.append(day)
    counts = {
        str(vc["values"]): int(vc["counts"])
        for vc in events.column("event_type").value_counts().to_pylist()
    }
    return days, {k: counts[k] for k in EVENT_TYPES if k in counts}


def _unique(table: pa.Table, col: str) -> list[str]:
    """Distinct values of a string column."""
    return [str(v) for v in table.column(col).unique().to_pylist()]


def _describe(
    out: str, n: int, days: list[dt.date], mix: dict[str, int], users: int, items: int
) -> str:
    kinds = ", ".join(f"{k} {v:,}" for k, v in mix.items())
    return (
        f"imported {n:,} events ({kinds}) into {out}: {len(days)} day partition(s) "
        f"{days[0]} .. {days[-1]}; {users:,} users, {items:,} items"
    )


def import_events(
    file: str,
    out: str,
    cols: EventColumns,
    users: FeatureColumns | None = None,
    items: FeatureColumns | None = None,
) -> str:
    """Import an event log (and feature tables) into day partitions of ``out``; returns a summary.

    Events land in the partition of their UTC day; each of those days also gets
    the users/items snapshot (the feature table if given, else the ids seen so far).
    """
    events = read_events(file, cols)
    users_t = read_features(users, USERS) if users is not None else None
    items_t = read_features(items, ITEMS) if items is not None else None
    days, mix = _write(out, events, users_t, items_t, "import events")
    n_users = users_t.num_rows if users_t is not None else len(_unique(events, "user_id"))
    n_items = items_t.num_rows if items_t is not None else len(_unique(events, "item_id"))
    return _describe(out, events.num_rows, days, mix, n_users, n_items)


def lightgcn_events(
    train: str | Path, test: str | Path, end_date: dt.date, train_days: int = 30, seed: int = 0
) -> tuple[pa.Table, int, int]:
    """A LightGCN split as purchase events: train spread over the ``train_days`` days before
    ``end_date``, test on ``end_date`` itself (so a 1-day holdout as of ``end_date`` is the split).
    """
    if train_days < 1:
        raise InputError(f"train_days must be >= 1, got {train_days}")
    split = load_lightgcn(train, test)
    rng = np.random.default_rng(seed)
    end_us = (end_date - dt.date(1970, 1, 1)).days * DAY_US
    n_tr, n_te = len(split.train_user), len(split.test_user)
    tr_ts = end_us - rng.integers(1, train_days * DAY_US + 1, size=n_tr)
    te_ts = end_us + rng.integers(0, DAY_US, size=n_te)

    def ids(prefix: str, n: int) -> np.ndarray:
        return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), 9)).astype(object)

    events = pa.table(
        {
            "event_id": pa.array(
                np.concatenate([ids("train-", n_tr), ids("test-", n_te)]), pa.string()
            ),
            "user_id": pa.array(np.concatenate([split.train_user, split.test_user])).cast(
                pa.string()
            ),
            "item_id": pa.array(np.concatenate([split.train_item, split.test_item])).cast(
                pa.string()
            ),
            "event_type": pa.array(np.full(n_tr + n_te, "purchase", dtype=object), pa.string()),
            "value": pa.nulls(n_tr + n_te, pa.float64()),
            "ts": pa.array(np.concatenate([tr_ts, te_ts]), pa.timestamp("us", tz="UTC")),
        },
        schema=EVENTS_SCHEMA,
    )
    return events, split.n_users, split.n_items


def import_lightgcn(
    train: str | Path, test: str | Path, out: str, end_date: dt.date, train_days: int = 30
) -> str:
    """Import a LightGCN split keeping it exactly (see :func:`lightgcn_events`).

    Ids stay the original integers, as strings.
    """
    events, n_users, n_items = lightgcn_events(train, test, end_date, train_days)
    users = _ids_only(np.arange(n_users).astype(str).astype(object), USERS_SCHEMA)
    items = _ids_only(np.arange(n_items).astype(str).astype(object), ITEMS_SCHEMA)
    days, mix = _write(out, events, users, items, "import lightgcn")
    return _describe(out, events.num_rows, days, mix, n_users, n_items)
