"""Compaction: the server's durable JSONL event log -> the lake's daily events partition.

Idempotent by construction: the day's partition is rebuilt as the union of what
it already holds and the log's events of that day, deduplicated by
``event_id`` and sorted, then swapped in whole. Running it twice, or after more
events arrived late, never loses or doubles an event. The log is only read:
rotating or deleting old log files stays the server operator's decision.

Served events may come from users the day's ``users`` snapshot has never seen
(someone who signed up after the dimension load, or a cold-start visitor): the
server accepts them, so the lake must too, or the validation gate's
referential check would refuse the next retrain. Compaction therefore adds
those user ids, with null features, to the day's ``users`` snapshot. Products
are different: the catalogue is the only source of what a product is, and an
event naming a product it does not know is a client or catalogue error (the
server keeps it in the log and ignores it for scoring), so unknown item ids
stay out of ``items`` and the gate's ``max_unknown_item_rate`` decides whether
their share is tolerable.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.lake import (
    conform,
    latest_partition_on_or_before,
    partition_uri,
    read_partition,
    write_partition,
)
from recsys.data.schema import EVENTS, EVENTS_SCHEMA, USERS
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
    new_users: int = 0
    """Users of the logged events added (features null) to the day's users snapshot."""

    def describe(self) -> str:
        return (
            f"{self.partition}: {self.total} events ({self.already_in_lake} already there, "
            f"{self.added} added from {self.from_log} logged that day, "
            f"{self.bad_lines} unreadable line(s)); {self.new_users} new user(s)"
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
    new_users = 0
    if merged.num_rows == 0:
        log.info("compaction %s: no events for %s, nothing written", event_log, day)
    else:
        # users first: a crash between the two writes then leaves harmless extra users,
        # never events the gate would refuse for naming unknown users
        new_users = add_unknown_users(lake, day, logged.column("user_id"))
        write_partition(lake, EVENTS, day, merged)
    result = CompactionResult(
        day=day,
        partition=uri,
        from_log=logged.num_rows,
        already_in_lake=existing.num_rows,
        added=merged.num_rows - existing.num_rows,
        total=merged.num_rows,
        bad_lines=bad,
        new_users=new_users,
    )
    log.info("compaction: %s", result.describe())
    return result


def add_unknown_users(lake: str, day: dt.date, user_ids: pa.ChunkedArray | pa.Array) -> int:
    """Add the ``user_ids`` missing from ``day``'s users snapshot to it, features null.

    The snapshot the gate reads for ``day`` (the latest on or before it) is
    rewritten whole as ``users/dt=day``, with its own columns, so features the
    contract leaves open survive; nothing is written when every id is known,
    which makes a rerun a no-op. Without any users snapshot there is nothing
    to extend: the dimension load owns that table, and the gate reports it
    missing. A later load of ``users/dt=day`` replaces the partition; rerunning
    the compaction afterwards adds the served users again.
    """
    base_day = latest_partition_on_or_before(lake, USERS, day)
    if base_day is None:
        log.warning("compaction: no users snapshot on or before %s: new users not recorded", day)
        return 0
    users = read_partition(lake, USERS, base_day)
    key = users.schema.field("user_id").type
    wanted = pc.unique(pc.drop_null(user_ids)).cast(key)
    known = pc.unique(pc.drop_null(users.column("user_id"))).cast(key)
    new = pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=known)))
    if len(new) == 0:
        return 0
    new = pc.take(new, pc.sort_indices(new))
    rows = pa.table(
        [new if f.name == "user_id" else pa.nulls(len(new), f.type) for f in users.schema],
        schema=users.schema.remove_metadata(),
    )
    write_partition(lake, USERS, day, pa.concat_tables([users.cast(rows.schema), rows]))
    log.info(
        "compaction: %d new user(s) added to users dt=%s (from the snapshot of dt=%s)",
        len(new), day, base_day,
    )  # fmt: skip
    return len(new)
