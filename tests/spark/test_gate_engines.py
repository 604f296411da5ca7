"""Every data-gate check fails on Spark on the same bad partitions as on pandas, with the
same message.

Four bad lakes (copies of the validation tests' synthetic lake) plant between them a flaw
for every check of the corpus (``tests/validation/test_corpus.py``): bad event rows, bad
dimension rows (beside events stored with nanosecond timestamps, which Spark reads only as
longs), volume and mix drift with a stale catalogue, broken column types. Each is
validated by both engines; their reports must hold the same checks with the same status,
rule and observed text (examples included), and together they fail every check the corpus
names. A real NaN (not a null) is planted too: pandas reads it as missing, and so must
Spark.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import SCHEMAS
from recsys.errors import GateFailed
from recsys.reports import GateReport, read_gate_report
from recsys.validation.config import ValidationConfig
from recsys.validation.gate import run_gate
from tests.validation.conftest import END, rewrite
from tests.validation.test_corpus import CASES, TS_AFTER

Mutate = Callable[[pd.DataFrame], pd.DataFrame]


def _bad_events(lake: Path) -> None:
    df = read_partition(str(lake), "events", END).to_pandas()
    for c in ("event_id", "user_id", "item_id", "event_type", "ts", "value"):
        df[c] = df[c].astype(object)
    views = list(df.index[df["event_type"] == "view"])
    ratings = list(df.index[df["event_type"] == "rating"])
    v = iter(views)
    df.loc[next(v), "user_id"] = None
    df.loc[next(v), "event_type"] = "teleport"
    df.loc[next(v), "ts"] = TS_AFTER
    a, b = next(v), next(v)
    df.loc[a, "event_id"] = df.loc[b, "event_id"]
    df.loc[next(v), "event_id"] = None
    df.loc[next(v), "item_id"] = None
    df.loc[next(v), "event_type"] = None
    df.loc[next(v), "ts"] = None
    df.loc[next(v), "ts"] = pd.Timestamp("2026-11-26T23:00", tz="UTC")
    df.loc[next(v), "value"] = 3.0
    df.loc[next(v), "user_id"] = "u" * 129
    df.loc[next(v), "event_id"] = "e" * 300
    df.loc[next(v), "item_id"] = "p000001\x07"
    df.loc[ratings[0], "value"] = 7.0
    df.loc[ratings[1], "value"] = None
    df.loc[ratings[2], "value"] = float("inf")
    nan_row = ratings[3]
    ghosts = views[40 : 40 + max(1, len(df) // 20)]
    df.loc[ghosts, "user_id"] = [f"ghost-{i}" for i in range(len(ghosts))]
    lost = views[100 : 100 + max(1, len(df) // 20)]
    df.loc[lost, "item_id"] = [f"lost-{i}" for i in range(len(lost))]
    extra = df.iloc[200 : 200 + max(2, len(df) // 50)].copy()
    extra["event_id"] = [f"dup-{i}" for i in range(len(extra))]
    df = pd.concat([df, extra], ignore_index=True)
    schema = pa.schema([f.with_nullable(True) for f in SCHEMAS["events"]])
    values = [None if pd.isna(x) else float(x) for x in df["value"]]
    values[nan_row] = float("nan")  # a real NaN in the file, not a null
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    table = table.set_column(
        table.schema.get_field_index("value"), "value", pa.array(values, pa.float64())
    )
    write_partition(str(lake), "events", END, table)


def _set_rows(changes: dict[str, list[tuple[int, object]]], dup_key: str) -> Mutate:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        for col, rows in changes.items():
            df[col] = df[col].astype(object)
            for i, value in rows:
                df.loc[df.index[i], col] = value
        df.loc[df.index[2], dup_key] = df.loc[df.index[1], dup_key]
        return df

    return fn


FUTURE = dt.date(2027, 1, 1)


def _ns_timestamps(lake: Path, table: str, day: dt.date) -> None:
    """The partition rewritten with nanosecond timestamps (pandas' unit): the contract's
    family, which Spark reads only as longs."""
    t = read_partition(str(lake), table, day)
    i = t.schema.get_field_index("ts")
    write_partition(
        str(lake), table, day, t.set_column(i, "ts", t.column("ts").cast(pa.timestamp("ns", "UTC")))
    )


def _bad_dimensions(lake: Path) -> None:
    _ns_timestamps(lake, "events", END)
    _ns_timestamps(lake, "events", END - dt.timedelta(days=1))
    rewrite(
        lake,
        "users",
        _set_rows(
            {
                "user_id": [(0, None), (5, "u\tnew")],
                "age": [(3, 5.0), (6, float("-inf"))],
                "signup_date": [(4, FUTURE)],
            },
            "user_id",
        ),
    )
    rewrite(
        lake,
        "items",
        _set_rows(
            {
                "item_id": [(0, None), (6, "p" * 129)],
                "price": [(3, -5.0), (7, float("inf"))],
                "rating": [(4, 6.5)],
                "created_date": [(5, FUTURE)],
            },
            "item_id",
        ),
    )


def _drift_and_stale_catalogue(lake: Path) -> None:
    def thin_views(df: pd.DataFrame) -> pd.DataFrame:
        df = df.iloc[: max(1, len(df) // 10)].copy()
        df.loc[df["event_type"].isin(["click", "add_to_cart"]), "event_type"] = "view"
        return df

    rewrite(lake, "events", thin_views)
    latest = read_partition(str(lake), "items", END)
    for age in (0, 1):
        shutil.rmtree(lake / "items" / f"dt={(END - dt.timedelta(days=age)).isoformat()}")
    write_partition(str(lake), "items", END - dt.timedelta(days=2), latest)


def _broken_types(lake: Path) -> None:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df = df.drop(columns=["value"])
        df["user_id"] = np.arange(len(df), dtype=np.int64)
        df["ts"] = df["ts"].dt.tz_localize(None)
        return df

    rewrite(lake, "events", fn, keep_schema=False)


LAKES: dict[str, Callable[[Path], None]] = {
    "bad_events": _bad_events,
    "bad_dimensions": _bad_dimensions,
    "drift_and_stale_catalogue": _drift_and_stale_catalogue,
    "broken_types": _broken_types,
}
CONFIG = ValidationConfig(data_docs=False, max_dimension_age_days={"items": 1})


def _gate(lake: Path, engine: str, spark: Any) -> GateReport:
    report = str(lake.parent / f"report-{engine}")
    with pytest.raises(GateFailed):
        run_gate(str(lake), END, report, CONFIG, engine=engine, spark=spark)
    return read_gate_report(report)


def test_every_check_fails_alike_on_both_engines(
    synth_lake: Path, tmp_path: Path, spark: Any
) -> None:
    failed_on_spark: set[str] = set()
    for name, plant in LAKES.items():
        lake = tmp_path / name / "lake"
        shutil.copytree(synth_lake, lake)
        plant(lake)
        local, remote = _gate(lake, "local", None), _gate(lake, "spark", spark)
        assert [c.name for c in remote.checks] == [c.name for c in local.checks]
        for a, b in zip(local.checks, remote.checks, strict=True):
            assert b == a, f"{name}: {a.name}\n  local: {a.line()}\n  spark: {b.line()}"
        assert remote.counts == local.counts
        failed_on_spark |= {c.name for c in remote.failed}
    wanted = {c.check for c in CASES} | {"items.dt.freshness"}
    assert wanted <= failed_on_spark, sorted(wanted - failed_on_spark)
