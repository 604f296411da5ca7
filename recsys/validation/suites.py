"""The great-expectations suites of the gate, one per table, plus the cross-partition one.

Each expectation carries its check's name, table, column and rule in ``meta``,
so a GX result maps back to one line of the gate's report. Checks that need a
column which failed the schema check are returned as skipped instead of run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from great_expectations.expectations.core.expect_column_value_lengths_to_be_between import (
    ExpectColumnValueLengthsToBeBetween,
)
from great_expectations.expectations.core.expect_column_values_to_be_between import (
    ExpectColumnValuesToBeBetween,
)
from great_expectations.expectations.core.expect_column_values_to_be_in_set import (
    ExpectColumnValuesToBeInSet,
)
from great_expectations.expectations.core.expect_column_values_to_be_null import (
    ExpectColumnValuesToBeNull,
)
from great_expectations.expectations.core.expect_column_values_to_be_unique import (
    ExpectColumnValuesToBeUnique,
)
from great_expectations.expectations.core.expect_column_values_to_not_be_null import (
    ExpectColumnValuesToNotBeNull,
)
from great_expectations.expectations.core.expect_column_values_to_not_match_regex import (
    ExpectColumnValuesToNotMatchRegex,
)
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.row_conditions import Column

from recsys.data.schema import (
    EVENT_TYPES,
    EVENTS,
    ID_CONTROL_CHARS,
    ID_MAX_LEN,
    ITEMS,
    RATING_MAX,
    RATING_MIN,
    SCHEMAS,
    USERS,
)
from recsys.validation.config import ValidationConfig


@dataclass(frozen=True)
class Spec:
    """One check run by great-expectations."""

    name: str
    table: str
    column: str
    rule: str
    expectation: Expectation
    needs: tuple[str, ...]

    def with_meta(self) -> Expectation:
        self.expectation.meta = {
            "check": self.name,
            "table": self.table,
            "column": self.column,
            "rule": self.rule,
        }
        return self.expectation


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def _not_null(table: str, column: str) -> Spec:
    return Spec(
        f"{table}.{column}.not_null", table, column, "not null",
        ExpectColumnValuesToNotBeNull(column=column), (column,),
    )  # fmt: skip


def _unique(table: str, column: str) -> Spec:
    return Spec(
        f"{table}.{column}.unique", table, column, "unique",
        ExpectColumnValuesToBeUnique(column=column), (column,),
    )  # fmt: skip


def _id_specs(table: str, column: str) -> list[Spec]:
    """An id the API could not take is refused here, with the API's own bounds."""
    return [
        Spec(
            f"{table}.{column}.length", table, column,
            f"length 1..{ID_MAX_LEN} (the API's limit for ids)",
            ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, max_value=ID_MAX_LEN),
            (column,),
        ),
        Spec(
            f"{table}.{column}.printable", table, column, "no control characters",
            ExpectColumnValuesToNotMatchRegex(column=column, regex=ID_CONTROL_CHARS), (column,),
        ),
    ]  # fmt: skip


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _finite_specs(table: str) -> list[Spec]:
    """Every floating-point column of the contract holds finite numbers: no +-inf (a NaN is
    a missing value, which the null rules judge: a column that is not nullable refuses it
    there)."""
    return [
        Spec(
            f"{table}.{f.name}.finite", table, f.name, "finite (no +-inf)",
            ExpectColumnValuesToBeBetween(column=f.name, min_value=-_FLOAT_MAX,
                                          max_value=_FLOAT_MAX),
            (f.name,),
        )
        for f in SCHEMAS[table] if pa.types.is_floating(f.type)
    ]  # fmt: skip


def events_specs(cfg: ValidationConfig, day: dt.date, cutoff: dt.datetime) -> list[Spec]:
    """Events of partition ``day``; ``cutoff`` is the end of the logical date (or earlier)."""
    start, end = day_bounds(day)
    is_rating = Column("event_type") == "rating"
    specs = [_not_null(EVENTS, c) for c in ("event_id", "user_id", "item_id", "event_type", "ts")]
    specs += [s for c in ("event_id", "user_id", "item_id") for s in _id_specs(EVENTS, c)]
    specs += _finite_specs(EVENTS)
    specs += [
        _unique(EVENTS, "event_id"),
        Spec(
            "events.event_type.allowed", EVENTS, "event_type",
            f"in {{{', '.join(EVENT_TYPES)}}}",
            ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
            ("event_type",),
        ),
        Spec(
            "events.value.rating_range", EVENTS, "value",
            f"{RATING_MIN:g} <= value <= {RATING_MAX:g} for rating events",
            ExpectColumnValuesToBeBetween(
                column="value", min_value=RATING_MIN, max_value=RATING_MAX, row_condition=is_rating
            ),
            ("value", "event_type"),
        ),
        Spec(
            "events.value.rating_present", EVENTS, "value", "not null for rating events",
            ExpectColumnValuesToNotBeNull(column="value", row_condition=is_rating),
            ("value", "event_type"),
        ),
        Spec(
            "events.value.null_unless_rating", EVENTS, "value", "null for non-rating events",
            # a null event type is not a rating: pandas' != says so, SQL's (Spark's) would
            # leave the row out, so the condition says it for both engines
            ExpectColumnValuesToBeNull(
                column="value", row_condition=(Column("event_type") != "rating")
                | Column("event_type").is_null(),
            ),
            ("value", "event_type"),
        ),
        Spec(
            "events.ts.in_partition_day", EVENTS, "ts",
            f"inside the partition's day [{start.isoformat()}, {end.isoformat()})",
            ExpectColumnValuesToBeBetween(
                column="ts", min_value=start, max_value=end, strict_max=True
            ),
            ("ts",),
        ),
        Spec(
            "events.ts.not_after_logical_date", EVENTS, "ts",
            f"before the end of the logical date ({cutoff.isoformat()})",
            ExpectColumnValuesToBeBetween(column="ts", max_value=cutoff, strict_max=True),
            ("ts",),
        ),
    ]  # fmt: skip
    return specs


def users_specs(cfg: ValidationConfig, day: dt.date) -> list[Spec]:
    return [
        _not_null(USERS, "user_id"),
        _unique(USERS, "user_id"),
        *_id_specs(USERS, "user_id"),
        *_finite_specs(USERS),
        Spec(
            "users.age.plausible", USERS, "age", f"{cfg.age_min:g} <= age <= {cfg.age_max:g}",
            ExpectColumnValuesToBeBetween(
                column="age", min_value=cfg.age_min, max_value=cfg.age_max
            ),
            ("age",),
        ),
        Spec(
            "users.signup_date.not_future", USERS, "signup_date", f"on or before {day.isoformat()}",
            ExpectColumnValuesToBeBetween(column="signup_date", max_value=day),
            ("signup_date",),
        ),
    ]  # fmt: skip


def items_specs(cfg: ValidationConfig, day: dt.date) -> list[Spec]:
    return [
        _not_null(ITEMS, "item_id"),
        _unique(ITEMS, "item_id"),
        *_id_specs(ITEMS, "item_id"),
        *_finite_specs(ITEMS),
        Spec(
            "items.price.non_negative", ITEMS, "price", "price >= 0",
            ExpectColumnValuesToBeBetween(column="price", min_value=0),
            ("price",),
        ),
        Spec(
            "items.rating.range", ITEMS, "rating",
            f"{RATING_MIN:g} <= rating <= {RATING_MAX:g}",
            ExpectColumnValuesToBeBetween(
                column="rating", min_value=RATING_MIN, max_value=RATING_MAX
            ),
            ("rating",),
        ),
        Spec(
            "items.created_date.not_future", ITEMS, "created_date",
            f"on or before {day.isoformat()}",
            ExpectColumnValuesToBeBetween(column="created_date", max_value=day),
            ("created_date",),
        ),
    ]  # fmt: skip


def metric_spec(
    name: str, table: str, column: str, rule: str, metric: str,
    low: float | None, high: float | None,
) -> Spec:  # fmt: skip
    """A cross-partition figure (computed in pandas) checked by GX on a one-row metrics table."""
    return Spec(
        name, table, column, rule,
        ExpectColumnValuesToBeBetween(column=metric, min_value=low, max_value=high),
        (metric,),
    )  # fmt: skip
