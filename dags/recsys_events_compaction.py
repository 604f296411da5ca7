"""
# recsys_events_compaction

Moves the inference server's durable event log (JSONL, fsynced before each
2xx) into the lake's daily `events` partition, closing the loop from serving
to training. Idempotent: the day's partition is rebuilt as the union of what it
holds and the log's events of that day, deduplicated by `event_id`; a rerun
(for late events) overwrites the day and never loses or doubles an event.
Users the day's `users` snapshot does not know yet (served events of new
users) are added to it with null features, so the data gate of the next
retrain accepts their events; unknown products are not invented: the
catalogue owns `items`, and the gate's `max_unknown_item_rate` bounds them.

The run for logical date D (starting just after midnight UTC of D+1) compacts
day D; `recsys_retrain` for D waits for that partition.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, CronDataIntervalTimetable, dag, task

from recsys.orchestration import tasks

EVENTS = Asset(name="recsys.events", uri="recsys://lake/events", group="recsys")


@dag(
    dag_id="recsys_events_compaction",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "events"],
    doc_md=__doc__,
    default_args={"owner": "recsys", "retries": 0},
)
def recsys_events_compaction() -> None:
    # Reading the log and rewriting a partition are I/O: retry them with backoff.
    @task(
        outlets=[EVENTS],
        retries=3,
        retry_delay=dt.timedelta(minutes=1),
        retry_exponential_backoff=True,
        max_retry_delay=dt.timedelta(minutes=15),
    )
    def compact(logical_date: Any = None, dag_run: Any = None) -> dict[str, Any]:
        return tasks.compact(logical_date, run_after=dag_run.run_after)

    compact()


recsys_events_compaction()
