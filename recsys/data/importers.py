"""Bring a user's own data into the lake: CSV/Parquet event logs, feature tables, LightGCN splits.

Every rule an input can break raises :class:`~recsys.errors.InputError` naming
the file, the column, the rule and an example of the offending value, so the
CLI prints one line the user can act on.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, field_validator
from tqdm import tqdm

from recsys.data.lake import write_partition
from recsys.data.lightgcn import load_lightgcn
from recsys.data.schema import (
    EVENT_TYPES,
    EVENTS,
    EVENTS_SCHEMA,
    ITEMS,
    ITEMS_SCHEMA,
    KEYS,
    SCHEMAS,
    USERS,
    USERS_SCHEMA,
)
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.storage import get_fs

log = get_logger(__name__)

DAY_US = 86_400 * 1_000_000


def parse_mapping(text: str | dict[str, str] | None, what: str) -> dict[str, str]:
    """``'a=b,c=d'`` to ``{'a': 'b', 'c': 'd'}``; an error naming ``what`` on a bad pair."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{what}: expected 'name=name,...', got {pair!r}")
        out[key.strip()] = value.strip()
    return out


class EventColumns(BaseModel):
    """Which source columns hold the event fields, and how to map event types."""

    user: str = "user_id"
    item: str = "item_id"
    time: str = "ts"
    type: str | None = None
    value: str | None = None
    event_id: str | None = None
    default_type: str = "purchase"
    type_map: str | dict[str, str] | None = None
    """Source type -> lake type, as ``'buy=purchase,pv=view'`` or a dict."""

    @field_validator("default_type")
    @classmethod
    def _known_default(cls, v: str) -> str:
        if v not in EVENT_TYPES:
            raise InputError(f"--default-type: {v!r} is not one of {', '.join(EVENT_TYPES)}")
        return v

    def types(self) -> dict[str, str]:
        mapping = parse_mapping(self.type_map, "--type-map")
        for src, dst in mapping.items():
            if dst not in EVENT_TYPES:
                raise InputError(
                    f"--type-map: {src}={dst}: {dst!r} is not one of {', '.join(EVENT_TYPES)}"
                )
        return mapping


class FeatureColumns(BaseModel):
    """A feature table: its file, its id column and a ``lake=source`` column mapping."""

    file: str
    id_col: str
    mapping: str | dict[str, str] | None = None


# ---------------------------------------------------------------- reading


def read_table_file(uri: str) -> pd.DataFrame:
    """A CSV (optionally compressed) or Parquet file as a DataFrame; CSV cells stay strings."""
    name = uri.lower()
    fs, path = get_fs(uri)
    if not fs.exists(path):
        raise InputError(f"{uri}: file not found")
    try:
        if name.endswith((".parquet", ".pq")):
            with fs.open(path, "rb") as f:
                return pq.read_table(f).to_pandas()
        if any(name.endswith(ext) for ext in (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv")):
            with fs.open(path, "rb") as f:
                return pd.read_csv(
                    f,
                    dtype=str,
                    keep_default_na=False,
                    na_values=[""],
                    sep="\t" if name.endswith(".tsv") else ",",
                    compression="infer" if "." in name else None,
                )
    except (
        pa.ArrowException,
        OSError,
        ValueError,
        pd.errors.ParserError,
        UnicodeDecodeError,
    ) as exc:
        raise InputError(f"{uri}: unreadable file ({exc})") from None
    raise InputError(f"{uri}: unknown file type, expected .csv, .csv.gz, .tsv or .parquet")


def _column(df: pd.DataFrame, col: str, file: str, role: str) -> pd.Series:
    if col not in df.columns:
        have = ", ".join(map(str, df.columns[:20]))
        raise InputError(f"{file}: column {col!r} ({role}) not found; columns are: {have}")
    return df[col]


def _example(values: pd.Series, bad: pd.Series | np.ndarray) -> str:
    first = values[np.asarray(bad)].iloc[0]
    return repr(first)


def _ids(s: pd.Series, file: str, col: str) -> pd.Series:
    """Ids as strings; floats that hold integers lose their ``.0``."""
    null = s.isna().to_numpy()
    if null.any():
        row = int(np.flatnonzero(null)[0])
        raise InputError(f"{file}: column {col!r}: rule 'not null': row {row} is empty")
    if pd.api.types.is_float_dtype(s) and (s == np.floor(s)).all():
        s = s.astype(np.int64)
    out = s.astype(str).str.strip()
    empty = (out == "").to_numpy()
    if empty.any():
        raise InputError(
            f"{file}: column {col!r}: rule 'not empty': row {int(np.flatnonzero(empty)[0])}"
        )
    return out


def _epoch_unit(x: np.ndarray) -> str:
    """Seconds, ms, us or ns, from the magnitude (year 1973..5138 for seconds)."""
    peak = float(np.nanmax(np.abs(x))) if len(x) else 0.0
    for bound, unit in ((1e11, "s"), (1e14, "ms"), (1e17, "us")):
        if peak < bound:
            return unit
    return "ns"


def parse_timestamps(s: pd.Series, file: str, col: str) -> np.ndarray:
    """Any timestamp column to UTC epoch microseconds (int64); naive times are UTC.

    Accepts datetimes, epoch numbers (s/ms/us/ns guessed from the magnitude)
    and ISO-8601 strings.
    """
    null = s.isna().to_numpy()
    if null.any():
        row = int(np.flatnonzero(null)[0])
        raise InputError(f"{file}: column {col!r}: rule 'not null timestamp': row {row} is empty")
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s):
        parsed = pd.to_datetime(s, utc=True)
    else:
        numeric = pd.to_numeric(s, errors="coerce")
        if numeric.notna().all():
            x = numeric.to_numpy(dtype=np.float64)
            unit = _epoch_unit(x)
            scale = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[unit]
            if pd.api.types.is_integer_dtype(numeric):
                ints: np.ndarray = numeric.to_numpy(dtype=np.int64)
                return ints * int(scale) if scale >= 1 else ints // 1000
            out: np.ndarray = np.rint(x * scale).astype(np.int64)
            return out
        try:
            parsed = pd.to_datetime(
                s.astype(str).str.strip(), utc=True, errors="coerce", format="ISO8601"
            )
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=s.index)
        bad = parsed.isna().to_numpy()
        if bad.any():
            raise InputError(
                f"{file}: column {col!r}: rule 'timestamp (epoch s/ms/us/ns or ISO-8601)': "
                f"cannot parse {_example(s, bad)} ({int(bad.sum())} row(s))"
            )
    us: np.ndarray = parsed.dt.as_unit("us").astype("int64").to_numpy()
    return us


def _event_types(df: pd.DataFrame, cols: EventColumns, file: str) -> pd.Series:
    if cols.type is None:
        return pd.Series(cols.default_type, index=df.index, dtype=object)
    raw = _column(df, cols.type, file, "event type")
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(
            f"{file}: column {cols.type!r}: rule 'not null event type': row {row} is empty"
        )
    raw = raw.astype(str).str.strip()
    mapped = raw.map(cols.types()).fillna(raw)
    unknown = ~mapped.isin(EVENT_TYPES).to_numpy()
    if unknown.any():
        kinds = sorted(set(raw[unknown]))[:5]
        raise InputError(
            f"{file}: column {cols.type!r}: rule 'event type in {', '.join(EVENT_TYPES)}': "
            f"unknown value(s) {', '.join(map(repr, kinds))} ({int(unknown.sum())} row(s)); "
            f"map them with --type-map, e.g. '{kinds[0]}=purchase'"
        )
    return mapped


def _values(df: pd.DataFrame, cols: EventColumns, etype: pd.Series, file: str) -> np.ndarray:
    if cols.value is None:
        return np.full(len(df), np.nan)
    raw = _column(df, cols.value, file, "value")
    num = pd.to_numeric(raw, errors="coerce")
    bad = (num.isna() & raw.notna()).to_numpy()
    if bad.any():
        raise InputError(
            f"{file}: column {cols.value!r}: rule 'number': cannot parse {_example(raw, bad)}"
        )
    # the contract keeps a value only on rating events
    return np.where(etype.to_numpy() == "rating", num.to_numpy(dtype=np.float64), np.nan)


def _row_hash_ids(frame: pd.DataFrame) -> pd.Series:
    """Deterministic ids from the row content.

    Identical rows get the same id on purpose: the gate then reports them as duplicates.
    """
    h = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    return pd.Series(np.char.add("h", np.char.zfill(np.char.mod("%x", h), 16)), index=frame.index)


def read_events(file: str, cols: EventColumns) -> pa.Table:
    """The event log in ``file`` as a contract ``events`` table (unsorted, all days)."""
    df = read_table_file(file)
    if df.empty:
        raise InputError(f"{file}: no rows")
    user = _ids(_column(df, cols.user, file, "user id"), file, cols.user)
    item = _ids(_column(df, cols.item, file, "item id"), file, cols.item)
    ts = parse_timestamps(_column(df, cols.time, file, "time"), file, cols.time)
    etype = _event_types(df, cols, file)
    value = _values(df, cols, etype, file)
    if cols.event_id is not None:
        event_id = _ids(_column(df, cols.event_id, file, "event id"), file, cols.event_id)
    else:
        content = pd.DataFrame({"u": user, "i": item, "t": etype, "ts": ts, "v": value})
        event_id = _row_hash_ids(content)
    return pa.table(
        {
            "event_id": pa.array(event_id.to_numpy(dtype=object), pa.string()),
            "user_id": pa.array(user.to_numpy(dtype=object), pa.string()),
            "item_id": pa.array(item.to_numpy(dtype=object), pa.string()),
            "event_type": pa.array(etype.to_numpy(dtype=object), pa.string()),
            "value": pa.array(value, pa.float64(), from_pandas=True),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        },
        schema=EVENTS_SCHEMA,
    )


def read_features(spec: FeatureColumns, table: str) -> pa.Table:
    """A feature table renamed by ``spec.mapping`` (lake=source) and cast to the contract.

    Without a mapping, the contract's columns found under their own names are taken.
    Extra mapped columns are kept (numbers as float64, the rest as strings).
    """
    schema = SCHEMAS[table]
    key = KEYS[table]
    df = read_table_file(spec.file)
    mapping = parse_mapping(spec.mapping, f"--{table}-cols")
    if not mapping:
        mapping = {f.name: f.name for f in schema if f.name != key and f.name in df.columns}
    ids = _ids(_column(df, spec.id_col, spec.file, f"{table} id"), spec.file, spec.id_col)
    dup = ids.duplicated().to_numpy()
    if dup.any():
        raise InputError(
            f"{spec.file}: column {spec.id_col!r}: rule 'unique id': "
            f"{_example(ids, dup)} appears twice"
        )
    arrays: dict[str, pa.Array] = {key: pa.array(ids.to_numpy(dtype=object), pa.string())}
    for lake_col in schema.names:
        if lake_col == key:
            continue
        src = mapping.get(lake_col)
        typ = schema.field(lake_col).type
        if src is None:
            arrays[lake_col] = pa.nulls(len(df), typ)
            continue
        arrays[lake_col] = _cast_feature(_column(df, src, spec.file, lake_col), typ, spec.file, src)
    for lake_col, src in mapping.items():
        if lake_col in arrays:
            continue
        col = _column(df, src, spec.file, lake_col)
        num = pd.to_numeric(col, errors="coerce")
        is_num = bool((num.notna() | col.isna()).all()) and bool(col.notna().any())
        typ = pa.float64() if is_num else pa.string()
        arrays[lake_col] = _cast_feature(col, typ, spec.file, src)
    return pa.table(arrays)


def _cast_feature(col: pd.Series, typ: pa.DataType, file: str, src: str) -> pa.Array:
    if pa.types.is_floating(typ):
        num = pd.to_numeric(col, errors="coerce")
        bad = (num.isna() & col.notna()).to_numpy()
        if bad.any():
            raise InputError(
                f"{file}: column {src!r}: rule 'number': cannot parse {_example(col, bad)}"
            )
        return pa.array(num.to_numpy(dtype=np.float64), typ, from_pandas=True)
    if pa.types.is_date(typ):
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        bad = (parsed.isna() & col.notna()).to_numpy()
        if bad.any():
            raise InputError(
                f"{file}: column {src!r}: rule 'date': cannot parse {_example(col, bad)}"
            )
        return pa.array(parsed.dt.date.to_numpy(dtype=object), typ, from_pandas=True)
    values = col.astype(object).where(col.notna(), None).to_numpy(dtype=object)
    return pa.array([None if v is None else str(v) for v in values], pa.string())


# ---------------------------------------------------------------- writing


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
