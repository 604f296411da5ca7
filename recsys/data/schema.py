"""The data contract of the lake (see DESIGN.md, "Data contract").

Tables are partitioned by day: ``<lake>/<table>/dt=YYYY-MM-DD/*.parquet``.
``events`` partitions hold the events whose ``ts`` falls on that UTC day;
``users`` and ``items`` partitions hold the full dimension table as known on
that day (a daily snapshot), so a point-in-time reader takes the latest
partition on or before its date.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

EVENTS: Final = "events"
USERS: Final = "users"
ITEMS: Final = "items"
TABLES: Final = (EVENTS, USERS, ITEMS)

EVENT_TYPES: Final = ("view", "click", "add_to_cart", "purchase", "rating")
"""Allowed ``event_type`` values, weakest signal first."""

RATING_MIN: Final = 1.0
RATING_MAX: Final = 5.0

ID_MAX_LEN: Final = 128
"""Longest id (user, product, event) the API accepts (``ServeConfig.max_id_len``'s default,
the ``Event`` model's ``max_length``); the data gate holds the lake's ids to the same bound."""
ID_CONTROL_CHARS: Final = r"[\x00-\x1f\x7f-\x9f]"
"""Control characters (C0, DEL, C1): an id holding one cannot be printed, logged or put in a
URL path as it is, so the data gate refuses it."""

EVENTS_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=True),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

USERS_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("age", pa.float64(), nullable=True),
        pa.field("country", pa.string(), nullable=True),
        pa.field("signup_date", pa.date32(), nullable=True),
    ]
)

ITEMS_SCHEMA: Final = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=True),
        pa.field("price", pa.float64(), nullable=True),
        pa.field("rating", pa.float64(), nullable=True),
        pa.field("created_date", pa.date32(), nullable=True),
    ]
)

SCHEMAS: Final = {EVENTS: EVENTS_SCHEMA, USERS: USERS_SCHEMA, ITEMS: ITEMS_SCHEMA}
KEYS: Final = {EVENTS: "event_id", USERS: "user_id", ITEMS: "item_id"}
