"""The lake's partitions round-trip on a local folder, memory:// and abfs:// (real Azurite)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from recsys.data.lake import (
    SUCCESS,
    latest_partition_on_or_before,
    list_partitions,
    partition_files,
    partition_uri,
    read_file,
    read_partition,
    read_range,
    write_partition,
)
from recsys.data.schema import EVENTS, EVENTS_SCHEMA, USERS
from recsys.data.synth import SynthConfig, generate
from recsys.errors import InputError
from recsys.storage import exists, get_fs, join, read_bytes, staged_dir, write_bytes_atomic

D1, D2, D3 = dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)


def events(n: int, day: dt.date, tag: str = "") -> pa.Table:
    start = (day - dt.date(1970, 1, 1)).days * 86_400_000_000
    return pa.table(
        {
            "event_id": [f"e{tag}{k}" for k in range(n)],
            "user_id": [f"u{k % 3}" for k in range(n)],
            "item_id": [f"i{k % 5}" for k in range(n)],
            "event_type": ["view"] * (n - 1) + ["rating"],
            "value": [None] * (n - 1) + [4.0],
            "ts": pa.array([start + k * 1_000_000 for k in range(n)], pa.timestamp("us", tz="UTC")),
        },
        schema=EVENTS_SCHEMA,
    )


@pytest.fixture(
    params=["local", "memory", pytest.param("abfs", marks=pytest.mark.azurite)],
)
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "lake")
    if request.param == "memory":
        uri: str = request.getfixturevalue("memory_lake")
        return uri
    uri = request.getfixturevalue("abfs_lake")
    return uri


def test_partition_round_trip(lake: str) -> None:
    assert list_partitions(lake, EVENTS) == []
    write_partition(lake, EVENTS, D2, events(7, D2))
    uri = write_partition(lake, EVENTS, D1, events(3, D1))
    assert uri == partition_uri(lake, EVENTS, D1) == join(lake, "events", "dt=2026-11-25")
    assert list_partitions(lake, EVENTS) == [D1, D2]
    back = read_partition(lake, EVENTS, D2)
    assert back.equals(events(7, D2))
    assert read_range(lake, EVENTS, [D1, D2]).num_rows == 10
    assert latest_partition_on_or_before(lake, EVENTS, D3) == D2
    assert latest_partition_on_or_before(lake, EVENTS, D1 - dt.timedelta(days=1)) is None
    # a rerun overwrites the partition as a whole
    write_partition(lake, EVENTS, D2, events(2, D2, tag="x"))
    again = read_partition(lake, EVENTS, D2)
    assert again.column("event_id").to_pylist() == ["ex0", "ex1"]
    assert len(partition_files(lake, EVENTS, D2)) == 1
    # no staging leftovers next to the partitions
    fs, root = get_fs(join(lake, EVENTS))
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    assert names == ["dt=2026-11-25", "dt=2026-11-26"]


def test_missing_and_corrupt_partitions(lake: str) -> None:
    with pytest.raises(InputError, match=r"events/dt=2026-11-27: partition not found"):
        read_partition(lake, EVENTS, D3)
    write_partition(lake, EVENTS, D3, events(4, D3))
    bad = partition_files(lake, EVENTS, D3)[0]
    write_bytes_atomic(bad, read_bytes(bad)[:100])  # truncated file
    with pytest.raises(InputError, match=r"part-00000\.parquet: unreadable Parquet file"):
        read_partition(lake, EVENTS, D3)
    with pytest.raises(InputError, match="file not found"):
        read_file(join(lake, "nope.parquet"))


def test_read_range_conforms_to_the_contract(lake: str) -> None:
    loose = events(3, D1).cast(
        pa.schema(
            [f.with_type(pa.large_string()) if f.type == pa.string() else f for f in EVENTS_SCHEMA]
        )
    )
    write_partition(lake, EVENTS, D1, loose)
    assert read_range(lake, EVENTS, [D1]).schema.equals(EVENTS_SCHEMA)
    write_partition(lake, EVENTS, D2, events(3, D2).drop_columns(["value"]))
    with pytest.raises(InputError, match="missing column"):
        read_range(lake, EVENTS, [D2])


@pytest.mark.azurite
def test_object_store_ignores_unfinished_partitions(abfs_lake: str) -> None:
    write_partition(abfs_lake, EVENTS, D1, events(2, D1))
    # a writer that died before its marker: the data is there, the partition is not
    fs, root = get_fs(partition_uri(abfs_lake, EVENTS, D2))
    with fs.open(f"{root}/part-00000.parquet", "wb") as f:
        f.write(b"half")
    assert list_partitions(abfs_lake, EVENTS) == [D1]
    with pytest.raises(InputError, match="partition not found"):
        read_partition(abfs_lake, EVENTS, D2)
    assert fs.exists(f"{get_fs(partition_uri(abfs_lake, EVENTS, D1))[1]}/{SUCCESS}")


@pytest.mark.azurite
def test_synth_lake_on_azurite(abfs_lake: str) -> None:
    cfg = SynthConfig(users=200, items=40, days=2, end_date=D3, seed=5)
    summary = generate(cfg, abfs_lake)
    assert list_partitions(abfs_lake, EVENTS) == [D2, D3]
    total = sum(read_partition(abfs_lake, EVENTS, d).num_rows for d in (D2, D3))
    assert total == summary.events > 0
    assert read_partition(abfs_lake, USERS, D3).num_rows == cfg.users
    assert exists(join(abfs_lake, "_truth", "manifest.json"))


def test_staged_dir_is_removed_on_error(tmp_path: Path) -> None:
    final = str(tmp_path / "thing")
    with pytest.raises(RuntimeError), staged_dir(final) as staged:
        write_bytes_atomic(join(staged, "a.txt"), b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_atomic_replaces(lake: str) -> None:
    uri = join(lake, "dir", "f.bin")
    write_bytes_atomic(uri, b"one")
    write_bytes_atomic(uri, b"two")
    assert read_bytes(uri) == b"two"
    with pytest.raises(InputError, match="file not found"):
        read_bytes(join(lake, "dir", "other.bin"))
