"""Pieces of the gate without great-expectations: schema typing and cross-partition figures."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from recsys.data.schema import EVENTS_SCHEMA, USERS_SCHEMA
from recsys.validation import cross
from recsys.validation.config import ValidationConfig
from recsys.validation.schema_check import check_schema

CFG = ValidationConfig()


def test_schema_accepts_lossless_relatives_and_rejects_others() -> None:
    schema = pa.schema(
        [
            ("user_id", pa.large_string()),
            ("age", pa.int32()),  # integers widen to float64
            ("country", pa.null()),  # all-null nullable feature
            ("signup_date", pa.string()),  # a date as text is not a date
        ]
    )
    checks, usable = check_schema("users", schema, "f.parquet")
    verdict = {c.column: c.passed for c in checks}
    assert verdict == {"user_id": True, "age": True, "country": True, "signup_date": False}
    assert usable == {"user_id", "age", "country"}
    bad = next(c for c in checks if not c.passed)
    assert bad.line() == "users.signup_date: column exists with type date32[day] (observed string)"


def test_schema_timestamps_must_be_utc_and_keys_not_null_typed() -> None:
    fields = {f.name: f.type for f in EVENTS_SCHEMA}
    for ts_type, ok in [
        (pa.timestamp("ns", tz="UTC"), True),
        (pa.timestamp("us", tz="Europe/Paris"), False),
        (pa.timestamp("us"), False),
    ]:
        schema = pa.schema({**fields, "ts": ts_type})
        checks, _ = check_schema("events", schema, "f")
        assert next(c for c in checks if c.column == "ts").passed is ok
    schema = pa.schema({**fields, "user_id": pa.null()})  # a key may not be all-null
    checks, usable = check_schema("events", schema, "f")
    assert "user_id" not in usable
    assert USERS_SCHEMA.field("user_id").nullable is False


def _events(users: list[str], types: list[str]) -> pa.Table:
    n = len(users)
    return pa.table(
        {
            "user_id": users,
            "item_id": ["i"] * n,
            "event_type": types,
            "ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * n, pa.timestamp("us", "UTC")),
        }
    )


def test_unknown_ids_rate_and_examples() -> None:
    ev = _events(["a", "b", "x", "y"], ["view"] * 4)
    known = pa.array(["a", "b"])
    m = cross.unknown_ids(ev, "user_id", known, "users", dt.date(2026, 1, 1), 0.3, CFG)
    assert m.value == pytest.approx(0.5)
    assert "2 of 4 events" in m.observed and "'x'" in m.observed
    assert (m.low, m.high) == (0.0, 0.3)


def test_duplicate_rate_counts_repeats_not_originals() -> None:
    ev = _events(["a", "a", "a", "b"], ["view"] * 4)
    m = cross.duplicate_rate(ev, CFG)
    assert m.value == pytest.approx(2 / 4)
    assert "2 repeated rows of 4" in m.observed


def test_volume_and_mix_drift_against_history() -> None:
    hist = cross.History(
        days=[dt.date(2026, 1, d) for d in (1, 2, 3)],
        rows=[100, 200, 300],
        mix={"view": 600, "click": 0},
    )
    v = cross.volume(50, hist, CFG)
    assert isinstance(v, cross.Metric) and v.value == pytest.approx(0.25)
    m = cross.mix_drift(pa.chunked_array([["view", "click", "click", "view"]]), hist, CFG)
    assert isinstance(m, cross.Metric) and m.value == pytest.approx(0.5)
    assert "click 0.000 -> 0.500" in m.observed
    empty = cross.History(days=[], rows=[], mix={})
    skipped = cross.volume(50, empty, CFG)
    assert not isinstance(skipped, cross.Metric) and skipped.skipped and skipped.passed


def test_config_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="volume_min_ratio"):
        ValidationConfig(volume_min_ratio=4, volume_max_ratio=3)
    with pytest.raises(ValueError):
        ValidationConfig(unknown_option=1)  # type: ignore[call-arg]
