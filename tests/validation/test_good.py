"""The good lake passes, and the report artifact holds report.json and Data Docs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from recsys.artifacts import read_manifest, verify_artifact
from recsys.validation.gate import ValidationConfig, default_report_uri, run_gate

from .conftest import END, FIRST, CliRun, rewrite


def test_good_lake_passes_with_report_and_data_docs(
    lake: Path, run_cli: Callable[..., CliRun]
) -> None:
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), docs=True)
    assert res.code == 0, res.err
    assert "validation PASSED" in res.out
    report = Path(default_report_uri(str(lake), END))
    doc = json.loads((report / "report.json").read_text())
    assert doc["gate"] == "validation" and doc["decision"] == "passed"
    assert doc["day"] == END.isoformat()
    names = {c["name"] for c in doc["checks"]}
    assert {
        "events.user_id.not_null",
        "events.*.volume",
        "events.event_type.mix_drift",
        "events.user_id.length",
        "items.price.finite",
        "users.dt.freshness",
    } <= names
    for check in doc["checks"]:
        assert set(check) >= {"name", "table", "column", "rule", "observed", "status"}
    index = report / "data_docs" / "index.html"
    assert index.is_file() and "events" in index.read_text()
    manifest = verify_artifact(str(report))
    assert manifest.kind == "validation_report"
    assert set(manifest.inputs) == {"events", "users", "items"}
    assert "data_docs/index.html" in manifest.files


def test_first_day_skips_history_checks_with_a_note(lake: Path, tmp_path: Path) -> None:
    result = run_gate(str(lake), FIRST, str(tmp_path / "r"), ValidationConfig(data_docs=False))
    assert result.passed
    skipped = {c.name for c in result.checks if c.skipped}
    assert skipped == {"events.*.volume", "events.event_type.mix_drift"}
    assert any("trailing partition" in n for n in result.notes)
    assert "skipped" in result.summary()


def test_brand_new_ids_within_tolerance_pass(lake: Path, tmp_path: Path) -> None:
    def new_users(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[:1], "user_id"] = "brand-new-user"
        return df

    rewrite(lake, "events", new_users)
    cfg = ValidationConfig(data_docs=False, max_unknown_user_rate=0.05)
    result = run_gate(str(lake), END, str(tmp_path / "r"), cfg)
    check = next(c for c in result.checks if c.name == "events.user_id.known_in_users")
    assert check.passed and "brand-new-user" in check.observed
    assert read_manifest(str(tmp_path / "r")).extra["passed"] is True


def test_memory_lake_and_report(synth_lake: Path) -> None:
    """Any fsspec URI works: the lake and the report artifact on ``memory://``."""
    import uuid

    from recsys.data.lake import list_partitions, read_partition, write_partition
    from recsys.data.schema import TABLES
    from recsys.storage import get_fs

    mem = f"memory://gate-{uuid.uuid4().hex[:8]}/lake"
    for table in TABLES:
        for day in list_partitions(str(synth_lake), table):
            write_partition(mem, table, day, read_partition(str(synth_lake), table, day))
    result = run_gate(mem, END, None, ValidationConfig())
    assert result.passed and result.report == default_report_uri(mem, END)
    fs, root = get_fs(result.report)
    assert fs.exists(f"{root}/report.json") and fs.exists(f"{root}/data_docs/index.html")
    assert read_manifest(result.report).kind == "validation_report"


def test_gx_fingerprint_hook_is_restored(lake: Path, tmp_path: Path) -> None:
    """The gate lends GX the files' hash as batch fingerprint only while it runs."""
    import great_expectations.execution_engine.pandas_execution_engine as engine

    before = engine.hash_pandas_dataframe
    run_gate(str(lake), END, str(tmp_path / "r"), ValidationConfig(data_docs=False))
    assert engine.hash_pandas_dataframe is before
