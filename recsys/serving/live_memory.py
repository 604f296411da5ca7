"""The embedded live store: per-user recent events in this process, made durable by the
local event log (:mod:`recsys.serving.eventlog`) and replayed from it at start. One replica
(``make demo``); several replicas share :mod:`recsys.serving.live_redis` instead."""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Sequence

from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving.eventlog import EventLog, read_log
from recsys.serving.live import (
    AcceptedEvent,
    LiveEvent,
    LiveStore,
    StoreHealth,
    StoreUnavailable,
    to_us,
)

log = get_logger(__name__)


class EmbeddedLiveStore(LiveStore):
    """In-process recent histories + the local durable log (one replica).

    The log is replayed at start (its last ``replay_days`` daily folders, or the whole
    single file), so a restarted process keeps the live events it had acknowledged.
    """

    backend = "memory"

    def __init__(self, event_log: str, history_len: int = 200, replay_days: int = 2) -> None:
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
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=self.replay_days)
        t0, n = time.perf_counter(), 0
        for rec in read_log(self.event_log, since):
            if rec is not None:
                self._remember(
                    str(rec["user_id"]),
                    LiveEvent(
                        to_us(rec["ts"]), str(rec["item_id"]), str(rec["event_type"]), rec["value"]
                    ),
                )
                n += 1
        if n:
            log.info(
                "memory live store: %d event(s) replayed from %s in %.2fs",
                n,
                self.event_log,
                time.perf_counter() - t0,
            )

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
