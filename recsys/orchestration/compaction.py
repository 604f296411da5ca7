"""Compaction: the server's durable JSONL event log -> the lake's daily events partition.

Idempotent by construction: the day's partition is rebuilt as the union of what
it already holds and the log's events of that day, deduplicated by
``event_id`` and sorted, then swapped in whole. Running it twice, or after more
events arrived late, never loses or doubles an event. The log is only read:
rotating or deleting old log files stays the server operator's decision.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.lake import conform, partition_uri, read_partition, write_partition
from recsys.data.schema import EVENTS, EVENTS_SCHEMA
from recsys.logs import get_logger
from recsys.storage import exists, get_fs

log = get_logger(__name__)


@dataclass(frozen=True)
class CompactionResult:
    day: dt.date
    partition: str
    from_log: int
    """Events of the day found in the log (after dedupe within the log)."""
    already_in_lake: int
    added: int
    total: int
    bad_lines: int

    def describe(self) -> str:
        return (
            f"{self.partition}: {self.total} events ({self.already_in_lake} already there, "
            f"{self.added} added from {self.from_log} logged that day, "
            f"{self.bad_lines} unreadable line(s))"
        )


def _log_files(event_log: str) -> list[str]:
    """The log file itself, or every ``*.jsonl*`` file in a folder (rotated logs)."""
    fs, path = get_fs(event_log)
    if not fs.exists(path):
        return []
    if fs.isdir(path):
        return sorted(p for p in fs.find(path) if ".jsonl" in p.rsplit("/", 1)[-1])
    return [path]


def read_log_day(event_log: str, day: dt.date) -> tuple[pa.Table, int]:
    """Events of ``day`` (UTC, by ``ts``) in the log, as the contract schema; and bad lines.

    A torn last line (the server died mid-append before fsync returned, so the
    client got no 2xx) is skipped and counted, not fatal.
    """
    fs, _ = get_fs(event_log)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    cols: dict[str, list[object]] = {f.name: [] for f in EVENTS_SCHEMA}
    bad = 0
    for path in _log_files(event_log):
        with fs.open(path, "rb") as f:
            for raw in f:
                line = raw.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                    ts = dt.datetime.fromisoformat(str(rec["ts"]).replace("Z", "+00:00"))
                    if ts.tzinfo is None:
                        ts = ts.replace(tzinfo=dt.UTC)
                    row = {
                        "event_id": str(rec["event_id"]),
                        "user_id": str(rec["user_id"]),
                        "item_id": str(rec["item_id"]),
                        "event_type": str(rec["event_type"]),
                        "value": None if rec.get("value") is None else float(rec["value"]),
                        "ts": ts.astimezone(dt.UTC),
                    }
                except (ValueError, KeyError, TypeError):
                    bad += 1
                    continue
                if start <= row["ts"] < end:  # type: ignore[operator]
                    for k, v in row.items():
                        cols[k].append(v)
    return pa.table(cols, schema=EVENTS_SCHEMA), bad


def _dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each ``event_id`` (rows already in the lake come first)."""
    if table.num_rows == 0:
        return table
    idx = pa.array(range(table.num_rows), pa.int64())
    first = (
        table.select(["event_id"])
        .append_column("_i", idx)
        .group_by("event_id")
        .aggregate([("_i", "min")])
    )
    keep = pc.sort_indices(first.column("_i_min"))
    return table.take(pc.take(first.column("_i_min"), keep))


def compact_events(event_log: str, lake: str, day: dt.date) -> CompactionResult:
    """Merge the log's events of ``day`` into ``<lake>/events/dt=day`` (rewritten whole)."""
    logged, bad = read_log_day(event_log, day)
    logged = _dedupe(logged)
    uri = partition_uri(lake, EVENTS, day)
    existing = EVENTS_SCHEMA.empty_table()
    if exists(uri):
        # an unreadable partition raises here rather than being silently replaced
        existing = conform(read_partition(lake, EVENTS, day), EVENTS)
    existing = _dedupe(existing)
    merged = _dedupe(pa.concat_tables([existing, logged]))
    merged = merged.sort_by([("ts", "ascending"), ("event_id", "ascending")])
    if merged.num_rows == 0:
        log.info("compaction %s: no events for %s, nothing written", event_log, day)
    else:
        write_partition(lake, EVENTS, day, merged)
    result = CompactionResult(
        day=day,
        partition=uri,
        from_log=logged.num_rows,
        already_in_lake=existing.num_rows,
        added=merged.num_rows - existing.num_rows,
        total=merged.num_rows,
        bad_lines=bad,
    )
    log.info("compaction: %s", result.describe())
    return result
