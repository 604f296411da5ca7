"""A recommendation request's options, as the engine takes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recsys.bundle import ALL_TYPES_MASK, TYPE_BITS
from recsys.data.schema import EVENT_TYPES
from recsys.errors import InputError


@dataclass
class Query:
    k: int = 20
    exclude_seen_mask: int = ALL_TYPES_MASK
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    exclude_items: list[str] = field(default_factory=list)
    features: dict[str, Any] | None = None
    segment: str | None = None


def seen_mask(spec: str) -> int:
    """``all`` | ``none`` | comma list of event types -> bitmask of history types to exclude."""
    spec = spec.strip().lower()
    if spec in {"", "all"}:
        return ALL_TYPES_MASK
    if spec == "none":
        return 0
    mask = 0
    for part in spec.split(","):
        t = part.strip()
        if t not in TYPE_BITS:
            raise InputError(
                f"exclude_seen: unknown event type {t!r}; "
                f"use all, none or some of {list(EVENT_TYPES)}"
            )
        mask |= TYPE_BITS[t]
    return mask
