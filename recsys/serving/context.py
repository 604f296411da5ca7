"""What every route of one server shares: options, metrics, the bundle manager, the live
store; and the two steps every read takes (the active engine, the user's live events)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException

from recsys.logs import get_logger
from recsys.serving.bundles import Manager
from recsys.serving.engine import Engine
from recsys.serving.health import ServedHealth
from recsys.serving.lineage import LineageCache
from recsys.serving.live import LiveEvent, LiveStore, StoreUnavailable
from recsys.serving.metrics import Metrics
from recsys.serving.schemas import ServeConfig

log = get_logger(__name__)


@dataclass
class ServerContext:
    cfg: ServeConfig
    metrics: Metrics
    manager: Manager
    store: LiveStore
    health: ServedHealth
    lineage: LineageCache = field(default_factory=LineageCache)

    def engine(self) -> Engine:
        e = self.manager.active
        if e is None:
            raise HTTPException(status_code=503, detail="no bundle loaded yet")
        return e

    async def live_events(self, user_id: str) -> tuple[list[LiveEvent], str]:
        """The user's live events and ``ok``, or none and ``unavailable`` when the store
        cannot answer in time (the request is then served from the bundle alone)."""
        try:
            events = await self.store.recent(user_id)
        except StoreUnavailable as exc:
            self.metrics.live_reads.labels(outcome="unavailable").inc()
            log.debug("serving %s from the bundle alone: %s", user_id, exc)
            return [], "unavailable"
        self.metrics.live_reads.labels(outcome="ok").inc()
        if events:  # oldest first
            self.health.note_event(events[-1].ts_us)
        return events, "ok"
