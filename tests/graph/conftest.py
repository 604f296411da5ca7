"""Small lakes for the graph tests, written through the real lake writer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pytest

from recsys.data.lake import write_partition
from recsys.data.schema import EVENT_TYPES, EVENTS_SCHEMA, ITEMS, ITEMS_SCHEMA, USERS, USERS_SCHEMA
from recsys.graph.config import GateConfig, GraphConfig

END = dt.date(2026, 3, 10)

Event = tuple[str, str, str, float | None, dt.datetime]


def ts(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def write_events(lake: str, events: Iterable[Event], prefix: str = "e") -> None:
    """Group events by UTC day of ``ts`` and write one partition per day."""
    by_day: dict[dt.date, list[Event]] = {}
    for e in events:
        by_day.setdefault(e[4].date(), []).append(e)
    for day, rows in sorted(by_day.items()):
        table = pa.table(
            {
                "event_id": [f"{prefix}{day.isoformat()}-{i}" for i in range(len(rows))],
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "value": [r[3] for r in rows],
                "ts": [r[4] for r in rows],
            },
            schema=EVENTS_SCHEMA,
        )
        write_partition(lake, "events", day, table)


def random_events(
    n_users: int,
    n_items: int,
    days: int,
    per_day: int,
    end: dt.date = END,
    seed: int = 0,
    user_prefix: str = "u",
    types: tuple[str, ...] = EVENT_TYPES,
) -> list[Event]:
    rng = np.random.default_rng(seed)
    out: list[Event] = []
    for d in range(days):
        day = end - dt.timedelta(days=days - 1 - d)
        for _ in range(per_day):
            t = str(types[rng.integers(len(types))])
            out.append(
                (
                    f"{user_prefix}{rng.integers(n_users):03d}",
                    f"i{rng.integers(n_items):03d}",
                    t,
                    float(rng.integers(1, 6)) if t == "rating" else None,
                    ts(day, int(rng.integers(24)), int(rng.integers(60))),
                )
            )
    return out


def write_dims(lake: str, day: dt.date, n_users: int, n_items: int, user_prefix: str = "u") -> None:
    countries = ["DE", "FR", None, "US"]
    cats = ["shoes", "books", "toys", None]
    write_partition(
        lake,
        USERS,
        day,
        pa.table(
            {
                "user_id": [f"{user_prefix}{i:03d}" for i in range(n_users)],
                "age": [float(18 + i % 50) if i % 7 else None for i in range(n_users)],
                "country": [countries[i % 4] for i in range(n_users)],
                "signup_date": [day - dt.timedelta(days=i) for i in range(n_users)],
            },
            schema=USERS_SCHEMA,
        ),
    )
    write_partition(
        lake,
        ITEMS,
        day,
        pa.table(
            {
                "item_id": [f"i{i:03d}" for i in range(n_items)],
                "category": [cats[i % 4] for i in range(n_items)],
                "price": [float(1 + i * 3) if i % 5 else None for i in range(n_items)],
                "rating": [float(1 + i % 5) for i in range(n_items)],
                "created_date": [day - dt.timedelta(days=i) for i in range(n_items)],
            },
            schema=ITEMS_SCHEMA,
        ),
    )


def small_config(**kw: object) -> GraphConfig:
    """A config for lakes of a few dozen users: a fixed ``holdout_days`` holdout (no minimum
    size to grow to; ``tests/graph/test_holdout_size.py`` tests the sizing)."""
    gate = GateConfig(min_users=2, min_items=2, min_edges=5)
    return GraphConfig.model_validate(
        {
            "window_days": 30,
            "gate": gate.model_dump(),
            "holdout_min_users": 0,
            "holdout_min_pairs": 0,
            **kw,
        }
    )


@pytest.fixture
def lake(tmp_path: object) -> str:
    return str(tmp_path) + "/lake"


@pytest.fixture
def make_lake(lake: str) -> Callable[..., str]:
    def _make(days: int = 5, per_day: int = 200, n_users: int = 40, n_items: int = 30) -> str:
        write_events(lake, random_events(n_users, n_items, days, per_day))
        write_dims(lake, END - dt.timedelta(days=days - 1), n_users, n_items)
        return lake

    return _make
