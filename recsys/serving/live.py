"""Live state: the events each user made since the served bundle's snapshot.

One small interface (:class:`LiveStore`) with two backends, chosen by the
``live_store`` setting (``recsys serve --live-store``, env ``RECSYS_LIVE_STORE``):

- ``memory`` (:class:`recsys.serving.live_memory.EmbeddedLiveStore`): per-user recent
  events in this process
  plus the local durable log (:mod:`recsys.serving.eventlog`), replayed at start;
  one replica, ``make demo``.
- ``redis://`` / ``rediss://`` (:class:`recsys.serving.live_redis.RedisLiveStore`):
  one store shared by every replica (Azure Managed Redis in production), so every
  replica folds in every user's latest events and a restarted one forgets nothing.

A write returns only once the store holds the batch (durable by the backend's
rules); a failure raises :class:`StoreUnavailable`, which the server answers with
503 and ``Retry-After``, never a 2xx. A read returns the user's recent events, oldest
first; the engine folds in those after its snapshot's end.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recsys.logs import get_logger

log = get_logger(__name__)


class StoreUnavailable(Exception):
    """The live store could not be reached in time; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """What the fold-in needs of one live event."""

    ts_us: int
    """Event time, microseconds since the epoch (UTC)."""
    item_id: str
    event_type: str
    value: float | None

    def encode(self) -> str:
        return json.dumps(
            [self.ts_us, self.item_id, self.event_type, self.value], separators=(",", ":")
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> LiveEvent:
        ts, item, kind, value = json.loads(raw)
        return cls(int(ts), str(item), str(kind), None if value is None else float(value))


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """An event the server accepted: the lake's columns plus where and when it arrived."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    value: float | None
    ts: dt.datetime
    received_at: dt.datetime
    model_version: str | None
    known_item: bool

    def record(self) -> dict[str, Any]:
        """The log line / stream entry (the compaction reads it back with ``parse_record``)."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "value": self.value,
            "ts": self.ts.isoformat(),
            "received_at": self.received_at.isoformat(),
            "model_version": self.model_version,
            "known_item": self.known_item,
        }

    def live(self) -> LiveEvent:
        return LiveEvent(to_us(self.ts), self.item_id, self.event_type, self.value)


def to_us(ts: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact: no float rounding)."""
    delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class StoreHealth:
    backend: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "ok": self.ok, "detail": self.detail}


class LiveStore(abc.ABC):
    """The live-state interface the server uses; see the module docstring."""

    backend: str = ""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect / load; called once in the server's lifespan."""

    @abc.abstractmethod
    async def append(self, events: Sequence[AcceptedEvent]) -> None:
        """Store ``events`` (one atomic step); raise StoreUnavailable if not acknowledged."""

    @abc.abstractmethod
    async def recent(self, user_id: str) -> list[LiveEvent]:
        """The user's most recent events, oldest first; raise StoreUnavailable on failure."""

    @abc.abstractmethod
    async def health(self) -> StoreHealth: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and disconnect."""
