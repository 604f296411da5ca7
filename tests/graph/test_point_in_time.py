from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys.artifacts import manifest_sha256, read_manifest
from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import EVENTS_SCHEMA
from recsys.errors import GateFailed
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot, snapshot_uri
from recsys.graph.window import assert_point_in_time, day_start_us

from .conftest import END, random_events, small_config, ts, write_dims, write_events


def _pairs(s: object) -> set[tuple[str, str]]:
    from recsys.graph.snapshot import GraphSnapshot

    assert isinstance(s, GraphSnapshot)
    return {(s.user_ids[u], s.item_ids[i]) for u, i in zip(s.train_user, s.train_item, strict=True)}


def test_future_events_never_enter(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=4)
    as_of = END - dt.timedelta(days=1)
    # the next day's partition, and a contract-breaking row in the as-of partition itself
    write_events(lake, [("ufuture", "ifuture", "purchase", None, ts(END, 1))], prefix="f")
    late = pa.table(
        {
            "event_id": ["late"],
            "user_id": ["ulate"],
            "item_id": ["ilate"],
            "event_type": ["purchase"],
            "value": [None],
            "ts": [
                dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.UTC)
                + dt.timedelta(days=1)
            ],
        },
        schema=EVENTS_SCHEMA,
    )
    old = read_partition(lake, "events", as_of)
    write_partition(lake, "events", as_of, pa.concat_tables([old.cast(EVENTS_SCHEMA), late]))
    s = load_snapshot(build_snapshot(lake, as_of, small_config(holdout_days=1)))
    ids = set(s.user_ids) | set(s.item_ids)
    assert not ids & {"ufuture", "ifuture", "ulate", "ilate"}
    assert read_manifest(s.uri).counts["events_outside_window"] == 1
    assert "events/dt=" + END.isoformat() not in read_manifest(s.uri).inputs


def test_point_in_time_assertion_fails_the_build() -> None:
    limit = day_start_us(END)
    assert_point_in_time(np.array([limit - 1]), limit, "train")
    with pytest.raises(GateFailed, match="point_in_time: 1 train event"):
        assert_point_in_time(np.array([limit - 1, limit]), limit, "train")


def test_backfill_equals_the_original(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=4)
    d1 = END - dt.timedelta(days=1)
    first = build_snapshot(lake, d1, small_config())
    original = Path(first, "manifest.json").read_bytes()
    # later data arrives and a later snapshot is built; then d1 is backfilled
    write_events(
        lake, random_events(40, 30, 2, 100, end=END + dt.timedelta(days=2), seed=9), prefix="n"
    )
    write_dims(lake, END + dt.timedelta(days=1), 50, 40)
    build_snapshot(lake, END + dt.timedelta(days=2), small_config())
    again = build_snapshot(lake, d1, small_config())
    assert again == first
    assert Path(again, "manifest.json").read_bytes() == original
    assert manifest_sha256(again) == manifest_sha256(first)


def test_holdout_is_time_based_and_never_in_train(lake: str) -> None:
    d0 = END - dt.timedelta(days=2)
    events = [
        ("a", "x", "view", None, ts(d0)),  # train only
        ("a", "y", "view", None, ts(END, 3)),  # holdout-day view: not a positive by default
        ("a", "z", "purchase", None, ts(END, 4)),  # holdout positive
        ("a", "x", "purchase", None, ts(END, 5)),  # pair already in train: not a positive
        ("b", "x", "click", None, ts(d0, 1)),
        (
            "b",
            "w",
            "add_to_cart",
            None,
            ts(END, 6),
        ),  # item unknown in train but mapped? no catalogue
        ("c", "z", "purchase", None, ts(END, 7)),  # user unknown in train: dropped
        ("b", "z", "click", None, ts(d0, 2)),
    ]
    write_events(lake, events)
    cfg = small_config(
        include_catalog_items=False, gate={"min_users": 1, "min_items": 1, "min_edges": 1}
    )
    s = load_snapshot(build_snapshot(lake, END, cfg))
    assert _pairs(s) == {("a", "x"), ("b", "x"), ("b", "z")}
    hold = {
        (s.user_ids[u], s.item_ids[i]) for u, i in zip(s.holdout_user, s.holdout_item, strict=True)
    }
    assert hold == {("a", "z")}
    counts = read_manifest(s.uri).counts
    assert counts["holdout_dropped_unknown_user"] == 1
    assert counts["holdout_dropped_unknown_item"] == 1
    assert counts["holdout_dropped_in_train"] == 1
    # the holdout-day events do not feed the behavioural features either
    names = s.feature_spec.user_feature_names
    decoded = s.feature_spec.users.decode(s.user_features)
    a = int(np.flatnonzero(s.user_ids == "a")[0])
    assert decoded.loc[a, "n_events"] == pytest.approx(1.0)
    assert "n_events" in names


def test_lightgcn_split_is_reproduced(lake: str, tmp_path: Path) -> None:
    importers = pytest.importorskip("recsys.data.importers")
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    rng = np.random.default_rng(0)
    train_pairs: set[tuple[int, int]] = set()
    test_pairs: set[tuple[int, int]] = set()
    tr_lines, te_lines = [], []
    for u in range(30):
        items = rng.choice(40, size=8, replace=False)
        tr, te = items[:6], items[6:]
        tr_lines.append(" ".join(map(str, [u, *tr])))
        te_lines.append(" ".join(map(str, [u, *te])))
        train_pairs |= {(u, int(i)) for i in tr}
        test_pairs |= {(u, int(i)) for i in te}
    train.write_text("\n".join(tr_lines) + "\n")
    test.write_text("\n".join(te_lines) + "\n")
    importers.import_lightgcn(train, test, lake, END)
    s = load_snapshot(build_snapshot(lake, END, small_config(window_days=365)))
    got_train = {
        (int(s.user_ids[u]), int(s.item_ids[i]))
        for u, i in zip(s.train_user, s.train_item, strict=True)
    }
    got_test = {
        (int(s.user_ids[u]), int(s.item_ids[i]))
        for u, i in zip(s.holdout_user, s.holdout_item, strict=True)
    }
    assert got_train == train_pairs
    assert got_test == test_pairs


def test_default_location(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3)
    uri = build_snapshot(lake, END, small_config())
    assert uri == snapshot_uri(lake, END)
    assert uri.endswith("graphs/as_of=2026-03-10")


def test_edges_record_their_event_types(lake: str) -> None:
    d0 = END - dt.timedelta(days=2)
    write_events(
        lake,
        [
            ("a", "x", "view", None, ts(d0)),
            ("a", "x", "purchase", None, ts(d0, 2)),
            ("b", "x", "rating", 4.0, ts(d0, 3)),
            ("b", "y", "click", None, ts(d0, 4)),
        ],
    )
    cfg = small_config(
        include_catalog_items=False, gate={"min_users": 1, "min_items": 1, "min_edges": 1}
    )
    uri = build_snapshot(lake, END, cfg)
    from recsys.artifacts import read_parquet
    from recsys.graph.snapshot import EDGES

    edges = read_parquet(f"{uri}/{EDGES}")
    s = load_snapshot(uri)
    got = {
        (s.user_ids[u], s.item_ids[i]): int(t)
        for u, i, t in zip(edges["user_idx"], edges["item_idx"], edges["types"], strict=True)
    }
    assert got == {("a", "x"): 0b01001, ("b", "x"): 0b10000, ("b", "y"): 0b00010}
