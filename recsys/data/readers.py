"""Read a user's own files into the lake's contract: an event log, a feature table.

CSV (plain or compressed), TSV or Parquet, local or on any URI :mod:`recsys.storage`
knows; columns are renamed and cast to the schemas of :mod:`recsys.data.schema`. Every
rule an input can break raises :class:`~recsys.errors.InputError` naming the file, the
column, the rule and an example of the offending value, so the CLI prints one line the
user can act on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, field_validator

from recsys.data.schema import EVENT_TYPES, EVENTS_SCHEMA, KEYS, SCHEMAS
from recsys.errors import InputError
from recsys.storage import get_fs


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
