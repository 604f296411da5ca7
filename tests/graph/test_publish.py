from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from recsys.artifacts import verify_artifact
from recsys.graph.build import build, build_snapshot
from recsys.graph.snapshot import load_snapshot, snapshot_uri

from .conftest import END, small_config


class Boom(RuntimeError):
    pass


def _explode(staged: str) -> None:
    assert Path(staged, "edges.parquet").exists()  # really mid-write: files are there
    raise Boom("disk full")


def _leftovers(lake: str) -> list[str]:
    return sorted(p.name for p in Path(lake, "graphs").iterdir())


def test_failure_mid_write_leaves_no_snapshot(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3)
    with pytest.raises(Boom):
        build(lake, END, small_config(), snapshot_uri(lake, END), _before_publish=_explode)
    assert not Path(snapshot_uri(lake, END)).exists()
    assert _leftovers(lake) == []


def test_failure_mid_write_keeps_the_old_snapshot(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3)
    uri = build_snapshot(lake, END, small_config())
    before = Path(uri, "manifest.json").read_bytes()
    with pytest.raises(Boom):
        build(lake, END, small_config(holdout_days=2), uri, _before_publish=_explode)
    assert Path(uri, "manifest.json").read_bytes() == before
    verify_artifact(uri)
    assert load_snapshot(uri).n_edges > 0
    assert _leftovers(lake) == [Path(uri).name]


def test_manifest_lists_inputs_with_hashes_and_files(make_lake: Callable[..., str]) -> None:
    lake = make_lake(days=3)
    uri = build_snapshot(lake, END, small_config())
    m = verify_artifact(uri)
    assert m.kind == "graph_snapshot"
    assert sorted(m.inputs) == [
        "events/dt=2026-03-08",
        "events/dt=2026-03-09",
        "events/dt=2026-03-10",
        "items/dt=2026-03-08",
        "users/dt=2026-03-08",
    ]
    assert all(len(r.sha256) == 64 for r in m.inputs.values())
    assert {"edges.parquet", "feature_spec.json", "user_ids.parquet", "item_ids.parquet"} <= set(
        m.files
    )
    assert m.counts["edges"] == load_snapshot(uri).n_edges
    assert m.config["window_days"] == 30
    # same inputs, same manifest; a changed input changes its hash
    again = build_snapshot(lake, END, small_config(), out=str(Path(lake) / "elsewhere" / "snap"))
    assert verify_artifact(again).model_dump() == m.model_dump()


def test_a_changed_input_changes_its_hash(make_lake: Callable[..., str]) -> None:
    import datetime as dt

    from .conftest import random_events, write_events

    lake = make_lake(days=3)
    m1 = verify_artifact(build_snapshot(lake, END, small_config()))
    day = END - dt.timedelta(days=1)
    write_events(lake, random_events(40, 30, 1, 150, end=day, seed=42), prefix="r")
    m2 = verify_artifact(build_snapshot(lake, END, small_config()))
    key = f"events/dt={day.isoformat()}"
    assert m1.inputs[key].sha256 != m2.inputs[key].sha256
    same = "events/dt=2026-03-10"
    assert m1.inputs[same] == m2.inputs[same]
