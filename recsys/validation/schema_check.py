"""Schema and types of a partition as read, before any casting.

Checked on the Arrow schema, not with great-expectations' type expectations:
GX sees pandas dtypes, where a date, a string and a mixed column all become
``object``, so it cannot tell the contract's types apart. A column passes when
its type is the contract's or one of the same family that casts to it without
loss (``large_string`` for ``string``, an integer for ``float64``, another
unit of a UTC timestamp), which is what :func:`recsys.data.lake.conform` does.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from recsys.data.schema import SCHEMAS
from recsys.reports import Check

_UTC = {"UTC", "Etc/UTC", "+00:00", "Z"}


def _family(t: pa.DataType) -> str:
    checks: list[tuple[str, Callable[[pa.DataType], bool]]] = [
        ("string", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x)
         or pa.types.is_string_view(x)),
        ("number", lambda x: pa.types.is_integer(x) or pa.types.is_floating(x)),
        ("timestamp", pa.types.is_timestamp),
        ("date", pa.types.is_date),
        ("null", pa.types.is_null),
    ]  # fmt: skip
    for name, test in checks:
        if test(t):
            return name
    return str(t)


def _compatible(actual: pa.DataType, expected: pa.DataType, nullable: bool) -> bool:
    if actual == expected:
        return True
    if _family(actual) == "null":
        return nullable  # an all-null column of a nullable feature
    if _family(actual) != _family(expected):
        return False
    if pa.types.is_timestamp(expected):
        # a naive timestamp has no time zone to trust; the contract is UTC
        return getattr(actual, "tz", None) in _UTC
    return True


def check_schema(table: str, schema: pa.Schema, source: str) -> tuple[list[Check], set[str]]:
    """One check per contract column; returns them and the columns that are usable."""
    contract = SCHEMAS[table]
    out: list[Check] = []
    usable: set[str] = set()
    for field in contract:
        name = f"{table}.{field.name}.type"
        rule = f"column exists with type {field.type}"
        idx = schema.get_field_index(field.name)
        if idx < 0:
            out.append(
                Check(
                    name=name, table=table, column=field.name, rule=rule,
                    observed=f"column missing in {source} (has {', '.join(schema.names)})",
                    status="failed", stage="schema",
                )
            )  # fmt: skip
            continue
        actual = schema.field(idx).type
        ok = _compatible(actual, field.type, field.nullable)
        if ok:
            usable.add(field.name)
        out.append(
            Check(
                name=name, table=table, column=field.name, rule=rule,
                observed=str(actual), status="passed" if ok else "failed",
                stage="schema",
            )
        )  # fmt: skip
    return out, usable
