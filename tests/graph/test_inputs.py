from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from recsys.data.lake import write_partition
from recsys.data.schema import EVENTS_SCHEMA
from recsys.errors import InputError
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot, snapshot_config

from .conftest import END, random_events, small_config, ts, write_events


def _bad_partition(lake: str, **override: list[object]) -> None:
    cols: dict[str, list[object]] = {
        "event_id": ["a", "b"],
        "user_id": ["u1", "u2"],
        "item_id": ["i1", "i2"],
        "event_type": ["view", "purchase"],
        "value": [None, None],
        "ts": [ts(END), ts(END, 13)],
    }
    cols.update(override)
    schema = (
        EVENTS_SCHEMA
        if "user_id" not in override
        else EVENTS_SCHEMA.set(1, pa.field("user_id", pa.string(), nullable=True))
    )
    write_partition(lake, "events", END, pa.table(cols, schema=schema))


def test_unknown_event_type_names_partition_column_and_value(lake: str) -> None:
    _bad_partition(lake, event_type=["view", "wishlist"])
    with pytest.raises(
        InputError,
        match=r"events/dt=2026-03-10: column event_type: unknown value\(s\) \['wishlist'\]",
    ):
        build_snapshot(lake, END, small_config())


def test_null_user_id_is_an_input_error(lake: str) -> None:
    _bad_partition(lake, user_id=["u1", None])
    with pytest.raises(InputError, match=r"events\.user_id: 1 null value"):
        build_snapshot(lake, END, small_config())


def test_no_partition_in_window(lake: str) -> None:
    write_events(lake, random_events(5, 5, 1, 10, end=END - dt.timedelta(days=40)))
    with pytest.raises(InputError, match="no events partition between 2026-02-09 and 2026-03-10"):
        build_snapshot(lake, END, small_config())


def test_without_holdout_every_event_trains(lake: str) -> None:
    write_events(lake, random_events(20, 15, 3, 60))
    uri = build_snapshot(lake, END, small_config(holdout_days=0))
    s = load_snapshot(uri)
    assert len(s.holdout_user) == 0
    from recsys.artifacts import read_manifest

    counts = read_manifest(uri).counts
    assert counts["train_events"] == 180 and counts["holdout_events"] == 0
    assert snapshot_config(uri).holdout_days == 0


def test_partitions_with_other_string_types_still_build(lake: str) -> None:
    write_events(lake, random_events(10, 8, 2, 40, end=END - dt.timedelta(days=1)))
    # a file written by another tool: large strings, no dictionary, nanosecond timestamps
    write_partition(
        lake,
        "events",
        END,
        pa.table(
            {
                "event_id": pa.array(["x1", "x2"], pa.large_string()),
                "user_id": pa.array(["u001", "u002"], pa.large_string()),
                "item_id": pa.array(["i001", "i002"], pa.large_string()),
                "event_type": pa.array(["view", "purchase"], pa.large_string()),
                "value": pa.array([None, None], pa.null()),
                "ts": pa.array([ts(END), ts(END, 13)], pa.timestamp("ns", tz="UTC")),
            }
        ),
    )
    s = load_snapshot(build_snapshot(lake, END, small_config()))
    assert s.n_edges > 0
    assert len(s.holdout_user) <= 1
