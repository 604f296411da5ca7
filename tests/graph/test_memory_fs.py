from __future__ import annotations

import datetime as dt
import uuid

from recsys.artifacts import read_manifest, verify_artifact
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot, previous_snapshot, snapshot_uri

from .conftest import END, random_events, small_config, write_dims, write_events


def test_builds_on_an_object_store_uri() -> None:
    # memory:// goes through the same fsspec paths as abfs:// (no rename, marker written last)
    lake = f"memory://graph-{uuid.uuid4().hex[:8]}/lake"
    write_events(lake, random_events(30, 20, 4, 120))
    write_dims(lake, END - dt.timedelta(days=3), 30, 20)
    first = build_snapshot(lake, END - dt.timedelta(days=1), small_config())
    second = build_snapshot(lake, END, small_config())
    assert second == snapshot_uri(lake, END)
    assert previous_snapshot(snapshot_uri(lake, END).rsplit("/", 1)[0], END) == first
    verify_artifact(second)
    assert read_manifest(second).inputs["previous_snapshot"].uri == first
    s1, s2 = load_snapshot(first), load_snapshot(second)
    assert list(s2.user_ids[: s1.n_users]) == list(s1.user_ids)
    assert s2.n_edges > 0
