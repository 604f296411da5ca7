"""A corpus of bad partitions: each breaks one rule and must fail the gate naming it.

Every case runs through the real CLI entry point (exit code 1) and asserts the
console output names the check's table, column and rule and the observed
offending value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.validation.gate import default_report_uri

from .conftest import END, CliRun, rewrite

TS_AFTER = pd.Timestamp("2026-11-28T05:00:00", tz="UTC")


def _set(column: str, value: object, where: Callable[[pd.DataFrame], pd.Series] | None = None
         ) -> Callable[[pd.DataFrame], pd.DataFrame]:  # fmt: skip
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        rows = df.index[where(df)] if where is not None else df.index
        df[column] = df[column].astype(object)
        df.loc[rows[:1], column] = value
        return df

    return fn


def _is(event_type: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda df: df["event_type"] == event_type


def _dup_event_id(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df.index[1], "event_id"] = df.loc[df.index[0], "event_id"]
    return df


def _dup_key(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[df.index[1], column] = df.loc[df.index[0], column]
        return df

    return fn


def _unknown(column: str, share: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        n = max(1, int(len(df) * share))
        df.loc[df.index[:n], column] = [f"ghost-{i}" for i in range(n)]
        return df

    return fn


def _duplicate_rows(df: pd.DataFrame) -> pd.DataFrame:
    extra = df.iloc[: max(2, len(df) // 50)].copy()
    extra["event_id"] = [f"dup-{i}" for i in range(len(extra))]
    return pd.concat([df, extra], ignore_index=True)


def _thin(df: pd.DataFrame) -> pd.DataFrame:
    return df.iloc[: max(1, len(df) // 10)]


def _clicks_to_views(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df["event_type"].isin(["click", "add_to_cart"]), "event_type"] = "view"
    return df


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.drop(columns=[column])


def _as_int(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = np.arange(len(df), dtype=np.int64)
        return df

    return fn


def _naive_ts(df: pd.DataFrame) -> pd.DataFrame:
    df["ts"] = df["ts"].dt.tz_localize(None)
    return df


FUTURE = dt.date(2027, 1, 1)


@dataclass(frozen=True)
class Case:
    id: str
    table: str
    mutate: Callable[[pd.DataFrame], pd.DataFrame]
    check: str
    says: tuple[str, ...]
    keep_schema: bool = True
    also: frozenset[str] = frozenset()
    """Checks that may fail along with ``check`` (the same flaw seen by another rule)."""


CASES = [
    # the five problems the issue names
    Case("null_user_id", "events", _set("user_id", None), "events.user_id.not_null",
         ("events.user_id: not null (observed 1 of",)),
    Case("unknown_event_type", "events", _set("event_type", "teleport"),
         "events.event_type.allowed", ("events.event_type: in {view", "'teleport'")),
    Case("negative_price", "items", _set("price", -5.0), "items.price.non_negative",
         ("items.price: price >= 0", "'-5.0'")),
    Case("ts_after_logical_date", "events", _set("ts", TS_AFTER),
         "events.ts.not_after_logical_date",
         ("events.ts: before the end of the logical date", "2026-11-28T05:00:00+00:00"),
         also=frozenset({"events.ts.in_partition_day"})),
    Case("duplicated_event_id", "events", _dup_event_id, "events.event_id.unique",
         ("events.event_id: unique (observed 2 of",)),
    # one case per remaining check
    Case("null_event_id", "events", _set("event_id", None), "events.event_id.not_null",
         ("events.event_id: not null",)),
    Case("null_item_id", "events", _set("item_id", None), "events.item_id.not_null",
         ("events.item_id: not null",)),
    Case("null_event_type", "events", _set("event_type", None), "events.event_type.not_null",
         ("events.event_type: not null",)),
    Case("null_ts", "events", _set("ts", None), "events.ts.not_null", ("events.ts: not null",)),
    Case("ts_before_day", "events", _set("ts", pd.Timestamp("2026-11-26T23:00", tz="UTC")),
         "events.ts.in_partition_day",
         ("events.ts: inside the partition's day", "2026-11-26T23:00:00+00:00")),
    Case("rating_out_of_range", "events", _set("value", 7.0, _is("rating")),
         "events.value.rating_range", ("events.value: 1 <= value <= 5 for rating events", "'7.0'")),
    Case("rating_without_value", "events", _set("value", None, _is("rating")),
         "events.value.rating_present", ("events.value: not null for rating events",)),
    Case("view_with_value", "events", _set("value", 3.0, _is("view")),
         "events.value.null_unless_rating", ("events.value: null for non-rating events", "'3.0'")),
    Case("missing_column", "events", _drop("value"), "events.value.type",
         ("events.value: column exists with type double (observed column missing",), False),
    Case("wrong_type", "events", _as_int("user_id"), "events.user_id.type",
         ("events.user_id: column exists with type string (observed int64)",), False),
    Case("naive_ts", "events", _naive_ts, "events.ts.type",
         ("events.ts: column exists with type timestamp[us, tz=UTC] (observed timestamp[us])",),
         False),
    Case("null_users_key", "users", _set("user_id", None), "users.user_id.not_null",
         ("users.user_id: not null",)),
    Case("dup_users_key", "users", _dup_key("user_id"), "users.user_id.unique",
         ("users.user_id: unique (observed 2 of",)),
    Case("implausible_age", "users", _set("age", 5.0), "users.age.plausible",
         ("users.age: 13 <= age <= 110", "'5.0'")),
    Case("future_signup", "users", _set("signup_date", FUTURE), "users.signup_date.not_future",
         ("users.signup_date: on or before 2026-11-27", "2027-01-01")),
    Case("null_items_key", "items", _set("item_id", None), "items.item_id.not_null",
         ("items.item_id: not null",)),
    Case("dup_items_key", "items", _dup_key("item_id"), "items.item_id.unique",
         ("items.item_id: unique",)),
    Case("item_rating_range", "items", _set("rating", 6.5), "items.rating.range",
         ("items.rating: 1 <= rating <= 5", "'6.5'")),
    Case("future_item", "items", _set("created_date", FUTURE), "items.created_date.not_future",
         ("items.created_date: on or before 2026-11-27", "2027-01-01")),
    Case("unknown_users", "events", _unknown("user_id", 0.05), "events.user_id.known_in_users",
         ("events.user_id: share of user_id not in users dt=2026-11-27 <= 0.01", "ghost-0")),
    Case("unknown_items", "events", _unknown("item_id", 0.05), "events.item_id.known_in_items",
         ("events.item_id: share of item_id not in items dt=2026-11-27 <= 0.01", "ghost-0")),
    Case("duplicate_rows", "events", _duplicate_rows, "events.*.duplicate_rate",
         ("events.(user_id,item_id,event_type,ts): duplicate rate <= 0.001 (observed rate",)),
    Case("low_volume", "events", _thin, "events.*.volume",
         ("events.*: row count within 0.3x-3x of the trailing 7-day median", "0.1")),
    Case("mix_drift", "events", _clicks_to_views, "events.event_type.mix_drift",
         ("events.event_type: event-type mix total variation distance", "largest shift view")),
    # ids the API could not take, and numbers that are not finite
    Case("long_user_id", "events", _set("user_id", "u" * 129), "events.user_id.length",
         ("events.user_id: length 1..128 (the API's limit for ids) (observed 1 of",)),
    Case("long_event_id", "events", _set("event_id", "e" * 300), "events.event_id.length",
         ("events.event_id: length 1..128",)),
    Case("control_char_item_id", "events", _set("item_id", "p000001\x07"),
         "events.item_id.printable", ("events.item_id: no control characters (observed 1 of",)),
    Case("control_char_users_key", "users", _set("user_id", "u\tnew"), "users.user_id.printable",
         ("users.user_id: no control characters",),
         also=frozenset({"events.user_id.known_in_users"})),
    Case("long_items_key", "items", _set("item_id", "p" * 129), "items.item_id.length",
         ("items.item_id: length 1..128",), also=frozenset({"events.item_id.known_in_items"})),
    Case("infinite_price", "items", _set("price", float("inf")), "items.price.finite",
         ("items.price: finite (no +-inf) (observed 1 of", "'inf'")),
    Case("infinite_age", "users", _set("age", float("-inf")), "users.age.finite",
         ("users.age: finite (no +-inf)", "'-inf'"), also=frozenset({"users.age.plausible"})),
    Case("infinite_rating_value", "events", _set("value", float("inf"), _is("rating")),
         "events.value.finite", ("events.value: finite (no +-inf)",),
         also=frozenset({"events.value.rating_range"})),
    Case("nan_rating_value", "events", _set("value", float("nan"), _is("rating")),
         "events.value.rating_present", ("events.value: not null for rating events",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_partition_fails_naming_the_problem(
    case: Case, lake: Path, run_cli: Callable[..., CliRun]
) -> None:
    rewrite(lake, case.table, case.mutate, keep_schema=case.keep_schema)
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat())
    assert res.code == 1, res.err
    assert "validation gate failed" in res.err
    for text in case.says:
        assert text in res.err, f"{text!r} not in:\n{res.err}"
    doc = json.loads((Path(default_report_uri(str(lake), END)) / "report.json").read_text())
    failed = {c["name"] for c in doc["checks"] if c["status"] == "failed"}
    assert case.check in failed
    assert failed - case.also == {case.check}, "only the planted flaw may fail"
    assert doc["decision"] == "failed"


def test_stale_dimension_table_fails_naming_it(
    lake: Path, run_cli: Callable[..., CliRun], tmp_path: Path
) -> None:
    """The items table stopped being updated two days ago: read, but not silently."""
    import shutil

    from recsys.data.lake import read_partition, write_partition

    # the last snapshot written holds every product the events name; it is just old
    latest = read_partition(str(lake), "items", END)
    for age in (0, 1):
        shutil.rmtree(lake / "items" / f"dt={(END - dt.timedelta(days=age)).isoformat()}")
    write_partition(str(lake), "items", END - dt.timedelta(days=2), latest)
    cfg = tmp_path / "gate.json"
    cfg.write_text(json.dumps({"data_docs": False, "max_dimension_age_days": {"items": 1}}))
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), "--config", str(cfg))
    assert res.code == 1, res.err
    assert (
        "items.dt: latest partition at most 1 day(s) older than 2026-11-27 (observed latest "
        "partition dt=2026-11-25: 2 day(s) old)"
    ) in res.err
    doc = json.loads((Path(default_report_uri(str(lake), END)) / "report.json").read_text())
    failed = {c["name"] for c in doc["checks"] if c["status"] == "failed"}
    assert failed == {"items.dt.freshness"}
    # within the allowed age it passes (the default allows 3 days), and says which day it read
    cfg.write_text(json.dumps({"data_docs": False}))
    res = run_cli("validate", "--lake", str(lake), "--date", END.isoformat(), "--config", str(cfg))
    assert res.code == 0, res.err
    assert "used the snapshot dt=2026-11-25" in res.out
