"""Read and write day partitions of the lake through fsspec.

A partition is written to a staging folder and swapped in whole (with a
``_SUCCESS`` marker written last on object stores), so a rerun for the same
day overwrites it and a reader never sees half of one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from recsys.data.schema import SCHEMAS, TABLES
from recsys.errors import InputError
from recsys.storage import get_fs, is_local, join, publish_dir, staged_dir

SUCCESS = "_SUCCESS"
_DT = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` to a date, with a readable error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r}: not a date, expected YYYY-MM-DD") from None


def partition_uri(lake: str, table: str, day: dt.date) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    return join(lake, table, f"dt={day.isoformat()}")


def list_partitions(lake: str, table: str) -> list[dt.date]:
    """Published partitions of ``table``, oldest first."""
    fs, root = get_fs(join(lake, table))
    if not fs.exists(root):
        return []
    days = []
    for entry in fs.ls(root, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        m = _DT.match(name)
        if m and _is_complete(fs, entry.rstrip("/")):
            days.append(dt.date.fromisoformat(m.group(1)))
    return sorted(days)


def _is_complete(fs: object, path: str) -> bool:
    from fsspec import AbstractFileSystem

    assert isinstance(fs, AbstractFileSystem)
    return is_local(fs) or bool(fs.exists(f"{path}/{SUCCESS}"))


def partition_files(lake: str, table: str, day: dt.date) -> list[str]:
    """URIs of the Parquet files of one partition, sorted; an error if it is missing."""
    uri = partition_uri(lake, table, day)
    fs, root = get_fs(uri)
    if not fs.exists(root) or not _is_complete(fs, root):
        raise InputError(f"{uri}: partition not found")
    files = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".parquet"))
    if not files:
        raise InputError(f"{uri}: partition has no .parquet files")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if is_local(fs):
        return files
    return [f"{protocol}://{p}" for p in files]


def read_file(uri: str, table: str | None = None) -> pa.Table:
    """Read one Parquet file; a corrupt or unreadable file is an error naming it."""
    fs, path = get_fs(uri)
    try:
        with fs.open(path, "rb") as f:
            t = pq.read_table(f)
    except FileNotFoundError:
        raise InputError(f"{uri}: file not found") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{uri}: unreadable Parquet file ({exc})") from None
    return t


def read_partition(lake: str, table: str, day: dt.date) -> pa.Table:
    """All rows of one partition, as written (no casting: validation checks the schema)."""
    tables = [read_file(u, table) for u in partition_files(lake, table, day)]
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        uri = partition_uri(lake, table, day)
        raise InputError(f"{uri}: files disagree on schema ({exc})") from None


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast to the contract schema of ``name`` (column order, types); raise on mismatch."""
    schema = SCHEMAS[name]
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise InputError(f"{name}: missing column(s) {', '.join(missing)}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{name}: columns do not match the contract ({exc})") from None


def write_partition(lake: str, table: str, day: dt.date, data: pa.Table) -> str:
    """Write (or overwrite) one partition atomically; returns its URI."""
    final = partition_uri(lake, table, day)
    with staged_dir(final) as staged:
        fs, root = get_fs(staged)
        with fs.open(f"{root}/part-00000.parquet", "wb") as f:
            pq.write_table(data, f, compression="zstd", row_group_size=1 << 20)
        with fs.open(f"{root}/{SUCCESS}", "wb") as f:
            f.write(b"")
        publish_dir(staged, final, SUCCESS)
    return final


def read_range(lake: str, table: str, days: Iterable[dt.date]) -> pa.Table:
    """Rows of several partitions conformed to the contract (for readers downstream of the gate)."""
    parts = [conform(read_partition(lake, table, d), table) for d in days]
    if not parts:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables(parts)


def latest_partition_on_or_before(lake: str, table: str, day: dt.date) -> dt.date | None:
    days = [d for d in list_partitions(lake, table) if d <= day]
    return days[-1] if days else None
