"""The write route: ``POST /v1/events`` (one event or a batch)."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.responses import Response

from recsys.serving.context import ServerContext
from recsys.serving.http import api_key_dependency, check_id, respond, timed
from recsys.serving.live import AcceptedEvent, StoreUnavailable, to_us
from recsys.serving.schemas import Event, EventBatch


def add_write_routes(app: FastAPI, ctx: ServerContext) -> None:
    cfg, metrics = ctx.cfg, ctx.metrics
    authorized = [Depends(api_key_dependency(cfg.api_key))]
    retry_after = str(max(1, math.ceil(cfg.live_retry_after_s)))

    @app.post("/v1/events", status_code=202, dependencies=authorized)
    @timed(metrics, "events")
    async def post_events(payload: Event | EventBatch | list[Event] = Body(...)) -> Response:
        """Store events in the live store (one atomic write), then answer 202: every replica
        folds them into the user's next recommendations. 503 with ``Retry-After`` when the
        store did not acknowledge them (nothing was accepted; retry with the same
        ``event_id`` values and each event still reaches the lake once)."""
        events = (
            [payload]
            if isinstance(payload, Event)
            else payload.events
            if isinstance(payload, EventBatch)
            else payload
        )
        if not events:
            raise HTTPException(status_code=422, detail="no events")
        if len(events) > cfg.max_batch:
            raise HTTPException(
                status_code=413, detail=f"batch of {len(events)} events; at most {cfg.max_batch}"
            )
        for ev in events:
            check_id(ev.user_id, "user_id", cfg.max_id_len)
            check_id(ev.item_id, "item_id", cfg.max_id_len)
        e = ctx.manager.active
        now = datetime.now(UTC)
        accepted = []
        for ev in events:
            ts = ev.ts if ev.ts is not None else now
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            accepted.append(
                AcceptedEvent(
                    event_id=ev.event_id or uuid.uuid4().hex,
                    user_id=ev.user_id,
                    item_id=ev.item_id,
                    event_type=ev.event_type,
                    value=ev.value,
                    ts=ts.astimezone(UTC),
                    received_at=now,
                    model_version=e.version if e else None,
                    known_item=bool(e is not None and ev.item_id in e.item_index),
                )
            )
        t0 = time.perf_counter()
        try:
            await ctx.store.append(accepted)
        except StoreUnavailable as exc:
            metrics.events.labels(outcome="unavailable").inc(len(events))
            return respond(
                {"detail": f"events not stored, retry later: {exc}"},
                status_code=503,
                headers={"Retry-After": retry_after},
            )
        metrics.store_write.observe(time.perf_counter() - t0)
        ctx.health.note_event(max(to_us(a.ts) for a in accepted))
        # "folded": events naming a product the active bundle knows, which every replica
        # folds into the user's next answer; the others are kept for the lake only
        folded = sum(a.known_item for a in accepted)
        metrics.foldins.inc(folded)
        metrics.events.labels(outcome="folded").inc(folded)
        metrics.events.labels(outcome="unknown_item").inc(len(events) - folded)
        return respond(
            {
                "accepted": len(events),
                "folded": folded,
                "ignored_unknown_item": len(events) - folded,
                "event_ids": [a.event_id for a in accepted],
                "model_version": e.version if e else None,
            },
            status_code=202,
        )
