"""Compaction: the server's accepted events -> the lake's daily events partitions.

Two sources, one merge. The ``memory`` live store's durable JSONL log
(:func:`compact_events`, one day) and the Redis live store's stream
(:func:`compact_stream`, read through a consumer group). Idempotent by
construction: a day's partition is rebuilt as the union of what it already holds
and the new events of that day, deduplicated by ``event_id`` and sorted, then
swapped in whole. Running it twice, or after more events arrived late, never
loses or doubles an event. The log is only read: rotating or deleting old log
files stays the server operator's decision; the stream is trimmed only of
entries acknowledged after their partition was published.

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
from collections.abc import Callable
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
from recsys.serving.eventlog import parse_record, read_log
from recsys.storage import exists

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


def read_log_day(event_log: str, day: dt.date) -> tuple[pa.Table, int]:
    """Events of ``day`` (UTC, by ``ts``) in the log, as the contract schema; and bad lines."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    rows, bad = [], 0
    for rec in read_log(event_log):
        if rec is None:
            bad += 1
        elif start <= rec["ts"] < end:
            rows.append(rec)
    return _table(rows), bad


def _table(rows: list[dict[str, object]]) -> pa.Table:
    cols: dict[str, list[object]] = {f.name: [r[f.name] for r in rows] for f in EVENTS_SCHEMA}
    return pa.table(cols, schema=EVENTS_SCHEMA)


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


def merge_day(lake: str, day: dt.date, new: pa.Table) -> tuple[int, int, int]:
    """Publish ``<lake>/events/dt=day`` as its rows plus ``new``, deduplicated by
    ``event_id``; returns (rows before, rows after, users added)."""
    uri = partition_uri(lake, EVENTS, day)
    existing = EVENTS_SCHEMA.empty_table()
    if exists(uri):
        # an unreadable partition raises here rather than being silently replaced
        existing = conform(read_partition(lake, EVENTS, day), EVENTS)
    existing = _dedupe(existing)
    merged = _dedupe(pa.concat_tables([existing, new]))
    merged = merged.sort_by([("ts", "ascending"), ("event_id", "ascending")])
    new_users = 0
    if merged.num_rows == 0:
        log.info("compaction: no events for %s, nothing written", day)
    elif merged.num_rows > existing.num_rows or existing.num_rows == 0:
        # users first: a crash between the two writes then leaves harmless extra users,
        # never events the gate would refuse for naming unknown users
        new_users = add_unknown_users(lake, day, new.column("user_id"))
        write_partition(lake, EVENTS, day, merged)
    return existing.num_rows, merged.num_rows, new_users


def compact_events(event_log: str, lake: str, day: dt.date) -> CompactionResult:
    """Merge the log's events of ``day`` into ``<lake>/events/dt=day`` (rewritten whole)."""
    logged, bad = read_log_day(event_log, day)
    logged = _dedupe(logged)
    before, after, new_users = merge_day(lake, day, logged)
    result = CompactionResult(
        day=day,
        partition=partition_uri(lake, EVENTS, day),
        from_log=logged.num_rows,
        already_in_lake=before,
        added=after - before,
        total=after,
        bad_lines=bad,
        new_users=new_users,
    )
    log.info("compaction: %s", result.describe())
    return result


def compact_stream(
    url: str,
    lake: str,
    through: dt.date,
    password: str | None = None,
    auth: str = "key",
    _after_publish: Callable[[], None] | None = None,
) -> list[CompactionResult]:
    """Drain the Redis live store's stream into the lake: every event of a day on or before
    ``through`` is merged into its day's partition, then acknowledged, then trimmed.

    Order of the steps, and what a crash between any two does: read (entries become
    pending for the one compaction consumer) -> publish each day's partition (a crash
    here: the next run re-reads every pending entry, the merge drops what is already
    there) -> acknowledge (a crash here: same) -> trim acknowledged entries (a crash
    here: the next trim does it). Events of days after ``through`` stay pending and are
    compacted by a later run.
    """
    from recsys.serving.live_redis import RedisEventStream

    stream = RedisEventStream(url, password=password, auth=auth)
    stream.ensure_group()
    by_day: dict[dt.date, list[dict[str, object]]] = {}
    done_ids: list[bytes] = []
    later = bad = 0
    for entry_id, rec in stream.read():
        try:
            row = parse_record(rec) if rec is not None else None
        except (ValueError, KeyError, TypeError):
            row = None
        if row is None:
            bad += 1
            done_ids.append(entry_id)  # unreadable: nothing to publish, counted and logged
            log.error(
                "compaction: stream entry %s is not an event record; skipped", entry_id.decode()
            )
            continue
        day = row["ts"].date()  # type: ignore[attr-defined]
        if day > through:
            later += 1
            continue
        by_day.setdefault(day, []).append(row)
        done_ids.append(entry_id)
    results = []
    for day in sorted(by_day):
        new = _dedupe(_table(by_day[day]))
        before, after, new_users = merge_day(lake, day, new)
        results.append(
            CompactionResult(
                day=day,
                partition=partition_uri(lake, EVENTS, day),
                from_log=new.num_rows,
                already_in_lake=before,
                added=after - before,
                total=after,
                bad_lines=0,
                new_users=new_users,
            )
        )
        log.info("compaction: %s", results[-1].describe())
    if _after_publish is not None:
        _after_publish()
    stream.ack(done_ids)
    trimmed = stream.trim()
    log.info(
        "compaction: stream %d entr(ies) acknowledged (%d unreadable), %d trimmed, "
        "%d of days after %s left pending",
        len(done_ids),
        bad,
        trimmed,
        later,
        through,
    )
    return results


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
