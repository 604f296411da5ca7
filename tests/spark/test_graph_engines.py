"""One lake, two engines: the Spark build writes the local build's snapshot.

Two days are built by both engines, the second extending the first's id maps and feature
encoding: identical id maps, edges and weights (float32, within 1e-6: in practice
bit-equal), holdout, served history and features, and manifests equal but for
``extra.engine``, which carries the file digests too (so every file is byte-identical).
The lake has what the rules must handle: ratings (one without a value, one of 9 stars),
users and products first seen in the holdout days, catalogue products without events, a
partition with nanosecond timestamps, and enough users for the holdout to grow past its
first day.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recsys.artifacts import read_manifest
from recsys.data.lake import read_partition, write_partition
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot
from recsys.graph.spark_build import build_snapshot_spark
from tests.graph.conftest import END, random_events, small_config, write_dims, write_events

DAY2 = END + dt.timedelta(days=1)


def _lake(root: Path) -> str:
    lake = str(root / "lake")
    events = random_events(60, 40, 8, 150, end=END, seed=1)
    # new users and products in the holdout days; ratings with odd values; a late event
    noon = dt.datetime(END.year, END.month, END.day, 12, tzinfo=dt.UTC)
    events += [
        ("newcomer", "i001", "purchase", None, noon),
        ("u001", "i999", "click", None, noon),
        ("u002", "i003", "rating", None, noon - dt.timedelta(days=3)),
        ("u003", "i004", "rating", 9.0, noon - dt.timedelta(days=4)),
    ]
    write_events(lake, events)
    write_dims(lake, END - dt.timedelta(days=7), 60, 45)
    # the second day: returning users, new users and products
    write_events(lake, random_events(70, 50, 1, 150, end=DAY2, seed=2), prefix="d2")
    write_dims(lake, DAY2, 70, 55)
    # one partition stored with nanosecond timestamps (pandas' unit; Spark reads it as longs)
    day = END - dt.timedelta(days=2)
    t = read_partition(lake, "events", day)
    i = t.schema.get_field_index("ts")
    write_partition(
        lake, "events", day, t.set_column(i, "ts", t.column("ts").cast(pa.timestamp("ns", "UTC")))
    )
    return lake


def _same(a: str, b: str) -> None:
    sa, sb = load_snapshot(a), load_snapshot(b)
    assert list(sa.user_ids) == list(sb.user_ids) and list(sa.item_ids) == list(sb.item_ids)
    for x, y in (
        (sa.train_user, sb.train_user),
        (sa.train_item, sb.train_item),
        (sa.holdout_user, sb.holdout_user),
        (sa.holdout_item, sb.holdout_item),
    ):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(sa.train_weight, sb.train_weight, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sa.train_types, sb.train_types)
    assert sa.history is not None and sb.history is not None
    np.testing.assert_array_equal(sa.history.user, sb.history.user)
    np.testing.assert_array_equal(sa.history.item, sb.history.item)
    np.testing.assert_allclose(sa.history.weight, sb.history.weight, rtol=0, atol=1e-6)
    assert list(sa.history.extra_user_ids) == list(sb.history.extra_user_ids)
    np.testing.assert_array_equal(sa.user_features, sb.user_features)
    np.testing.assert_array_equal(sa.item_features, sb.item_features)
    assert sa.feature_spec == sb.feature_spec
    ma, mb = read_manifest(a).model_dump(mode="json"), read_manifest(b).model_dump(mode="json")
    assert "engine" not in ma["extra"] and mb["extra"].pop("engine") == "spark"
    # each engine extends its own previous snapshot (whose manifest names its engine)
    pa_ = ma["inputs"].pop("previous_snapshot", None)
    pb = mb["inputs"].pop("previous_snapshot", None)
    assert (pa_ is None) == (pb is None)
    if pa_ is not None and pb is not None:
        assert Path(pa_["uri"]).name == Path(pb["uri"]).name
    assert ma == mb


def test_both_engines_build_the_same_snapshots(tmp_path: Path, spark: Any) -> None:
    lake = _lake(tmp_path)
    cfg = small_config(
        holdout_min_users=200,
        holdout_min_pairs=40,
        holdout_max_days=4,
        holdout_max_event_share=0.45,
    )
    outs: dict[str, list[str]] = {"local": [], "spark": []}
    for day in (END, DAY2):
        for engine in ("local", "spark"):
            root = tmp_path / engine / "graphs" / f"as_of={day.isoformat()}"
            report = str(tmp_path / engine / "reports" / day.isoformat())
            if engine == "local":
                out = build_snapshot(lake, day, cfg, out=str(root), report=report)
            else:
                out = build_snapshot_spark(
                    lake, day, cfg, out=str(root), report=report, spark=spark
                )
            outs[engine].append(out)
        _same(outs["local"][-1], outs["spark"][-1])

    first, second = (read_manifest(u) for u in outs["spark"])
    # the lake exercised what the test claims: a grown holdout, holdout-only users, ratings,
    # an extended id map
    assert first.counts["holdout_days"] > 1 and first.counts["history_only_users"] >= 1
    assert "holdout_max_event_share" in first.extra["holdout_sizing"]
    assert second.counts["new_items"] > 0
    assert "previous_snapshot" in second.inputs
    s1, s2 = load_snapshot(outs["spark"][0]), load_snapshot(outs["spark"][1])
    assert list(s2.user_ids[: s1.n_users]) == list(s1.user_ids)
    assert list(s2.item_ids[: s1.n_items]) == list(s1.item_ids)


def test_nanosecond_timestamps_read_to_the_exact_microsecond(tmp_path: Path, spark: Any) -> None:
    import pyarrow.parquet as pq

    from recsys.spark import parquet_schema, read_parquet

    # whole microseconds of 2026-2027 that a double division by 1000 rounds one below
    micros = [1790240098621264, 1794828047875920, 1764201600123456]
    path = str(tmp_path / "part.parquet")
    ts = pa.array([m * 1000 for m in micros], pa.int64()).cast(pa.timestamp("ns", "UTC"))
    pq.write_table(pa.table({"ts": ts}), path)
    schema, _ = parquet_schema([path])
    df = read_parquet(spark, [path], schema).selectExpr("unix_micros(ts)")
    got = [r[0] for r in df.collect()]
    assert got == micros
