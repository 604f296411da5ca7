"""Operations routes: health, readiness, metrics, the served model, rollback and reload."""

from __future__ import annotations

import asyncio

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recsys.errors import InputError
from recsys.serving import registry as reg
from recsys.serving.context import ServerContext
from recsys.serving.http import api_key_dependency, respond, timed
from recsys.serving.schemas import ReloadBody


def add_ops_routes(app: FastAPI, ctx: ServerContext) -> None:
    cfg, metrics, manager = ctx.cfg, ctx.metrics, ctx.manager
    authorized = [Depends(api_key_dependency(cfg.api_key))]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Ready once a bundle serves. The live store's state is reported but does not
        make the replica unready: every replica shares the store, so failing readiness
        would take the whole Service out when reads can still be answered from the
        bundle (writes answer 503 meanwhile)."""
        health = await ctx.store.health()
        metrics.store_up.labels(backend=health.backend).set(1.0 if health.ok else 0.0)
        e = manager.active
        if e is None:
            return JSONResponse({"ready": False, "error": manager.last_error,
                                 "live_store": health.to_dict()}, status_code=503)
        return respond({"ready": True, "model_version": e.version,
                        "live_store": health.to_dict()})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def model_info() -> Response:
        a, p = manager.active, manager.previous
        return respond({
            "active": {"version": a.version, "uri": a.uri, "data_cutoff": a.meta.data_cutoff}
            if a else None,
            "previous": {"version": p.version, "uri": p.uri} if p else None,
            "registry": cfg.registry,
            "live_store": ctx.store.backend,
            "last_error": manager.last_error,
        })

    @app.post("/v1/admin/rollback", dependencies=authorized)
    @timed(metrics, "admin")
    async def admin_rollback() -> Response:
        """Serve the previous bundle again (and point the registry at it, if watching one)."""
        if cfg.registry:
            try:
                await asyncio.to_thread(reg.rollback, cfg.registry)
            except InputError as exc:
                raise HTTPException(status_code=409, detail=str(exc)) from None
            await manager.check_registry()
        else:
            if manager.previous is None:
                raise HTTPException(status_code=409, detail="no previous bundle to roll back to")
            manager.activate(manager.previous)
            metrics.reloads.labels(outcome="rollback").inc()
        return respond({"model_version": ctx.engine().version})

    @app.post("/v1/admin/reload", dependencies=authorized)
    @timed(metrics, "admin")
    async def admin_reload(body: ReloadBody | None = None) -> Response:
        """Load ``bundle_uri`` now (verified; refused bundles leave the active one serving),
        or re-read the registry pointer."""
        if body is not None and body.bundle_uri:
            try:
                await manager.load(body.bundle_uri)
            except InputError as exc:
                raise HTTPException(status_code=422, detail=f"refused: {exc}") from None
        else:
            manager.refused.clear()
            await manager.check_registry()
        return respond({"model_version": ctx.engine().version,
                        "last_error": manager.last_error})
