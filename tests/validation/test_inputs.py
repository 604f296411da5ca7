"""Unreadable, empty, truncated or missing inputs: exit 2 with a message naming the file."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from recsys.data.lake import write_partition
from recsys.data.schema import EVENTS_SCHEMA

from .conftest import END, CliRun, rewrite


def _events_file(lake: Path, day: dt.date = END) -> Path:
    return next((lake / "events" / f"dt={day.isoformat()}").glob("*.parquet"))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_parquet_exits_2_naming_the_file(
    lake: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = _events_file(lake)
    _truncate(path)
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2
    assert str(path) in res.err and "unreadable Parquet file" in res.err
    assert "Traceback" not in res.err


def test_corrupt_and_zero_byte_files_name_the_file(
    lake: Path, run_cli: Callable[..., CliRun]
) -> None:
    path = _events_file(lake)
    path.write_bytes(b"not parquet at all" * 10)
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2 and str(path) in res.err
    path.write_bytes(b"")
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2 and str(path) in res.err


def test_corrupt_history_partition_is_named(lake: Path, run_cli: Callable[..., CliRun]) -> None:
    path = _events_file(lake, END - dt.timedelta(days=1))
    _truncate(path)
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2 and str(path) in res.err


def test_empty_partition_exits_2(lake: Path, run_cli: Callable[..., CliRun]) -> None:
    write_partition(str(lake), "events", END, EVENTS_SCHEMA.empty_table())
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2
    assert "empty events partition (0 rows)" in res.err and str(_events_file(lake)) in res.err


def test_partition_without_files_exits_2(lake: Path, run_cli: Callable[..., CliRun]) -> None:
    part = lake / "events" / f"dt={END.isoformat()}"
    for f in part.glob("*.parquet"):
        f.unlink()
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2 and "no .parquet files" in res.err and str(part) in res.err


def test_missing_partitions_exit_2(lake: Path, run_cli: Callable[..., CliRun]) -> None:
    res = run_cli("validate", "--lake", str(lake), "--date", "2026-12-05")
    assert res.code == 2
    assert f"{lake}/events/dt=2026-12-05: partition not found" in res.err
    shutil.rmtree(lake / "users")
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 2 and f"{lake}/users: no users partition on or before" in res.err


def test_bad_date_and_config_exit_2(
    lake: Path, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    res = run_cli("validate", "--lake", str(lake), "--date", "27/11/2026")
    assert res.code == 2 and "not a date" in res.err
    bad = tmp_path / "gate.json"
    bad.write_text(json.dumps({"volume_min_ratio": 5, "volume_max_ratio": 2}))
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), "--config", str(bad))
    assert res.code == 2 and "volume_min_ratio must not exceed" in res.err
    bad.write_text(json.dumps({"max_mix_tvdd": 0.1}))
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), "--config", str(bad))
    assert res.code == 2 and "max_mix_tvdd" in res.err


def test_config_file_sets_thresholds(
    lake: Path, tmp_path: Path, run_cli: Callable[..., CliRun]
) -> None:
    rewrite(lake, "events", lambda df: df.iloc[: len(df) // 10])
    cfg = tmp_path / "gate.toml"
    cfg.write_text("volume_min_ratio = 0.05\ndata_docs = false\n")
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), "--config", str(cfg))
    assert res.code == 0, res.err


def _recsys() -> str:
    return str(Path(sys.executable).parent / "recsys")


def test_real_command_exit_codes(lake: Path, tmp_path: Path) -> None:
    """The installed ``recsys`` entry point: 1 for a failed check, 2 for a truncated file."""
    rewrite(lake, "events", lambda df: df.assign(event_type=df["event_type"].where(
        df.index != 0, "teleport")))  # fmt: skip
    cfg = tmp_path / "c.json"
    cfg.write_text('{"data_docs": false}')
    args = [_recsys(), "validate", "--lake", str(lake), "--date", END.isoformat(), "--config"]
    proc = subprocess.run([*args, str(cfg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "events.event_type: in {view" in proc.stderr and "'teleport'" in proc.stderr
    items = next((lake / "items" / f"dt={END.isoformat()}").glob("*.parquet"))
    _truncate(items)
    proc = subprocess.run([*args, str(cfg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and str(items) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_extra_columns_are_allowed(lake: Path, tmp_path: Path) -> None:
    """Extra columns outside the contract do not fail the gate (features may grow)."""
    from recsys.validation.gate import ValidationConfig, run_gate

    rewrite(lake, "users", lambda df: df.assign(loyalty=1.0), keep_schema=False)
    result = run_gate(str(lake), END, str(tmp_path / "r"), ValidationConfig(data_docs=False))
    assert result.passed
