"""Read the lake partitions a snapshot depends on, hashing each as it is read.

Each file is read once into memory: the bytes are hashed (the manifest's
content hash of the partition) and parsed from the same buffer. Events come
back as integer-coded numpy columns; string ids are dictionary-encoded by
pyarrow, so no Python code ever touches a single event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recsys.artifacts import InputRef
from recsys.data.lake import conform, partition_files, partition_uri
from recsys.data.schema import EVENT_TYPES, EVENTS, ITEMS, USERS
from recsys.errors import InputError
from recsys.storage import read_bytes

EVENT_COLUMNS = ["user_id", "item_id", "event_type", "value", "ts"]
_TS = pa.timestamp("us", tz="UTC")
_DICT = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Events:
    """Events of the window; ``user``/``item`` index ``user_vocab``/``item_vocab`` (sorted)."""

    user: np.ndarray  # int64 codes
    item: np.ndarray  # int64 codes
    type_code: np.ndarray  # int8, position in EVENT_TYPES
    value: np.ndarray  # float64, NaN where null
    ts_us: np.ndarray  # int64 microseconds since the epoch, UTC
    user_vocab: np.ndarray  # object (str)
    item_vocab: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    @classmethod
    def empty(cls) -> Events:
        empty = np.zeros(0, np.int64)
        return cls(
            empty,
            empty,
            empty.astype(np.int8),
            empty.astype(np.float64),
            empty,
            np.zeros(0, object),
            np.zeros(0, object),
        )


def partition_sha256(file_digests: list[tuple[str, str]]) -> str:
    """A partition's content hash (its :class:`~recsys.artifacts.InputRef`'s ``sha256``) from
    its files' ``(uri, sha256)`` in listing order; both build engines hash this way, so a
    snapshot's lineage does not depend on which one read the lake."""
    h = hashlib.sha256()
    for uri, digest in file_digests:
        h.update(f"{uri.rstrip('/').rsplit('/', 1)[-1]}\0{digest}\n".encode())
    return h.hexdigest()


def _read_partition(
    lake: str, table: str, day: dt.date, columns: list[str] | None
) -> tuple[pa.Table, InputRef]:
    uri = partition_uri(lake, table, day)
    digests = []
    parts = []
    for file_uri in partition_files(lake, table, day):
        data = read_bytes(file_uri)
        digests.append((file_uri, hashlib.sha256(data).hexdigest()))
        try:
            dict_cols = [
                c for c in ("user_id", "item_id", "event_type") if columns and c in columns
            ]
            t = pq.read_table(
                pa.BufferReader(data), columns=columns, read_dictionary=dict_cols or None
            )
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"{file_uri}: unreadable Parquet file ({exc})") from None
        parts.append(t)
    try:
        table_ = (
            pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{uri}: files disagree on schema ({exc})") from None
    return table_, InputRef(uri=uri, sha256=partition_sha256(digests))


def _as_dictionary(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Every partition's id columns as ``dictionary<int32, string>``, whatever the file stored."""
    if pa.types.is_dictionary(col.type):
        return col if col.type == _DICT else col.cast(_DICT)
    return pc.dictionary_encode(col.cast(pa.string()))


def _global_codes(col: pa.ChunkedArray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column across chunks: ``(sorted uniques, int64 codes)``."""
    if col.null_count:
        raise InputError(f"{where}: {col.null_count} null value(s), ids must be non-null")
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    chunks = [c for c in col.chunks if len(c)]
    if not chunks:
        return np.zeros(0, dtype=object), np.zeros(0, np.int64)
    # one hash pass over all chunk dictionaries, then a sort of the (few) distinct ids
    dicts = pa.concat_arrays([c.dictionary.cast(pa.large_string()) for c in chunks])
    enc = pc.dictionary_encode(dicts)
    uniq = enc.dictionary
    order = pc.sort_indices(uniq).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    dict_codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    codes = []
    offset = 0
    for c in chunks:
        local = c.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        codes.append(dict_codes[offset + local])
        offset += len(c.dictionary)
    vocab = uniq.take(pa.array(order)).to_numpy(zero_copy_only=False).astype(object)
    return vocab, np.concatenate(codes)


def read_events(lake: str, days: list[dt.date]) -> tuple[Events, dict[str, InputRef]]:
    """Events of the given day partitions (missing ones are skipped) and their input refs."""
    tables: list[pa.Table] = []
    refs: dict[str, InputRef] = {}
    for day in days:
        t, ref = _read_partition(lake, EVENTS, day, EVENT_COLUMNS)
        missing = [c for c in EVENT_COLUMNS if c not in t.column_names]
        if missing:
            raise InputError(f"{ref.uri}: missing column(s) {', '.join(missing)}")
        kinds = pc.unique(t.column("event_type").cast(pa.string())).to_pylist()
        unknown = sorted(str(k) for k in kinds if k not in EVENT_TYPES)
        if unknown:
            raise InputError(
                f"{ref.uri}: column event_type: unknown value(s) {unknown}, "
                f"allowed {list(EVENT_TYPES)}"
            )
        try:
            t = pa.table(
                {
                    "user_id": _as_dictionary(t.column("user_id")),
                    "item_id": _as_dictionary(t.column("item_id")),
                    "event_type": _as_dictionary(t.column("event_type")),
                    "value": t.column("value").cast(pa.float64()),
                    "ts": t.column("ts").cast(_TS),
                }
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InputError(f"{ref.uri}: columns do not match the contract ({exc})") from None
        if t.column("ts").null_count:
            raise InputError(f"{ref.uri}: column ts: {t.column('ts').null_count} null timestamp(s)")
        tables.append(t)
        refs[f"{EVENTS}/dt={day.isoformat()}"] = ref
    if not tables:
        return Events.empty(), refs

    # chunks keep their own dictionaries; _global_codes unifies them
    def chunks(name: str) -> pa.ChunkedArray:
        return pa.chunked_array([c for t in tables for c in t.column(name).chunks], type=_DICT)

    user_vocab, user = _global_codes(chunks("user_id"), "events.user_id")
    item_vocab, item = _global_codes(chunks("item_id"), "events.item_id")
    type_vocab, type_local = _global_codes(chunks("event_type"), "events.event_type")
    type_map = np.array([EVENT_TYPES.index(str(v)) for v in type_vocab], dtype=np.int8)
    type_code = type_map[type_local] if len(type_local) else np.zeros(0, np.int8)
    value = np.concatenate(
        [t.column("value").to_numpy().astype(np.float64, copy=False) for t in tables]
    )
    ts_us = np.concatenate([t.column("ts").cast(pa.int64()).to_numpy() for t in tables])
    return Events(user, item, type_code, value, ts_us, user_vocab, item_vocab), refs


def read_dimension(lake: str, table: str, day: dt.date) -> tuple[pd.DataFrame, InputRef]:
    """A users/items daily snapshot conformed to the contract, as pandas, with its ref."""
    assert table in (USERS, ITEMS)
    t, ref = _read_partition(lake, table, day, None)
    df = conform(t, table).to_pandas()
    key = "user_id" if table == USERS else "item_id"
    if df[key].isna().any():
        raise InputError(f"{ref.uri}: column {key}: null id(s)")
    # validation rejects duplicate keys; keep the last row so a lax lake still builds
    df = df.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
    return df, ref
