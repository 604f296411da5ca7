"""Live state: the events each user made since the served bundle's snapshot.

One small interface (:class:`LiveStore`) with two backends, chosen by the
``live_store`` setting (``recsys serve --live-store``, env ``RECSYS_LIVE_STORE``):

- ``memory`` (:class:`EmbeddedLiveStore`): per-user recent events in this process
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
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recsys.errors import InputError
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
        return json.dumps([self.ts_us, self.item_id, self.event_type, self.value],
                          separators=(",", ":"))

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
            "event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
            "event_type": self.event_type, "value": self.value, "ts": self.ts.isoformat(),
            "received_at": self.received_at.isoformat(), "model_version": self.model_version,
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


class EmbeddedLiveStore(LiveStore):
    """In-process recent histories + the local durable log (one replica).

    The log is replayed at start (its last ``replay_days`` daily folders, or the whole
    single file), so a restarted process keeps the live events it had acknowledged.
    """

    backend = "memory"

    def __init__(self, event_log: str, history_len: int = 200, replay_days: int = 2) -> None:
        from recsys.serving.eventlog import EventLog

        self.event_log = event_log
        self.history_len = history_len
        self.replay_days = replay_days
        self.users: dict[str, deque[LiveEvent]] = {}
        try:
            self._log = EventLog(event_log)
        except OSError as exc:
            raise InputError(
                f"--event-log {event_log}: cannot write the memory live store's log "
                f"({exc.strerror}); point it at a writable folder, or use --live-store redis://"
            ) from None

    async def start(self) -> None:
        from recsys.serving.eventlog import read_log

        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=self.replay_days)
        t0, n = time.perf_counter(), 0
        for rec in read_log(self.event_log, since):
            if rec is not None:
                self._remember(str(rec["user_id"]), LiveEvent(
                    to_us(rec["ts"]), str(rec["item_id"]), str(rec["event_type"]), rec["value"]))
                n += 1
        if n:
            log.info("memory live store: %d event(s) replayed from %s in %.2fs",
                     n, self.event_log, time.perf_counter() - t0)

    def _remember(self, user_id: str, ev: LiveEvent) -> None:
        q = self.users.get(user_id)
        if q is None:
            q = self.users[user_id] = deque(maxlen=self.history_len)
        q.append(ev)

    async def append(self, events: Sequence[AcceptedEvent]) -> None:
        try:
            await self._log.append([e.record() for e in events])
        except OSError as exc:
            raise StoreUnavailable(f"event log {self.event_log}: {exc}") from exc
        for e in events:
            self._remember(e.user_id, e.live())

    async def recent(self, user_id: str) -> list[LiveEvent]:
        q = self.users.get(user_id)
        return list(q) if q else []

    async def health(self) -> StoreHealth:
        return StoreHealth(self.backend, True, self._log.path)

    async def close(self) -> None:
        self._log.close()


def open_live_store(url: str, cfg: Any) -> LiveStore:
    """The backend ``url`` names (``memory`` or ``redis[s]://...``), configured from ``cfg``
    (a :class:`recsys.serving.schemas.ServeConfig`)."""
    if url in ("", "memory"):
        return EmbeddedLiveStore(cfg.event_log, cfg.live_history_len)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from recsys.serving.live_redis import RedisLiveStore

        return RedisLiveStore(
            url,
            password=cfg.live_store_password,
            auth=cfg.live_store_auth,
            history_len=cfg.live_history_len,
            ttl_s=cfg.live_ttl_days * 86_400,
            read_timeout_s=cfg.live_read_timeout_ms / 1e3,
            write_timeout_s=cfg.live_write_timeout_ms / 1e3,
            backoff_s=cfg.live_retry_after_s,
        )
    raise InputError(f"--live-store {url!r}: use memory, redis://host:port/db or rediss://...")
