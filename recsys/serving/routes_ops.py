"""Operations routes: health, readiness, metrics, the served model and its lineage, the
served-recommendation health, rollback and reload."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recsys.errors import InputError
from recsys.serving import registry as reg
from recsys.serving.context import ServerContext
from recsys.serving.http import api_key_dependency, respond, timed
from recsys.serving.lineage import Step
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
            return JSONResponse(
                {"ready": False, "error": manager.last_error, "live_store": health.to_dict()},
                status_code=503,
            )
        return respond({"ready": True, "model_version": e.version, "live_store": health.to_dict()})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def model_info() -> Response:
        a, p = manager.active, manager.previous
        return respond(
            {
                "active": {"version": a.version, "uri": a.uri, "data_cutoff": a.meta.data_cutoff}
                if a
                else None,
                "previous": {"version": p.version, "uri": p.uri} if p else None,
                "registry": cfg.registry,
                "live_store": ctx.store.backend,
                "last_error": manager.last_error,
            }
        )

    @app.get("/v1/ops/health")
    async def served_health() -> Response:
        """Served-recommendation health over the sliding window (``window_s``): catalogue
        coverage, Gini of exposure, the share of answers by source (history, features,
        segment, popularity, store_fallback), latency p50/p99, model age, age of the newest
        live event. The same figures are Prometheus gauges on ``/metrics``."""
        return respond(ctx.health.snapshot())

    @app.get("/v1/ops/lineage")
    async def model_lineage() -> Response:
        """The serving model version, where it came from (bundle -> model run -> graph
        snapshot -> validation report, each with its manifest hash, dates and HTML reports
        under ``/ui/reports/``), and the version a rollback would serve."""
        e = ctx.engine()
        entry, history = await _registry_entries()
        published = entry.published_at if entry and entry.bundle_uri == e.uri else None
        steps = await ctx.lineage.get(e.uri, e.manifest_sha)
        previous: dict[str, Any] | None = None
        if cfg.registry:
            if history:
                prev = history[-1]
                previous = {
                    "version": prev.version,
                    "uri": prev.bundle_uri,
                    "manifest_sha256": prev.manifest_sha256,
                    "published_at": prev.published_at,
                    "from": "registry",
                }
        elif manager.previous is not None:
            p = manager.previous
            previous = {
                "version": p.version,
                "uri": p.uri,
                "manifest_sha256": p.manifest_sha,
                "published_at": None,
                "from": "this server",
            }
        return respond(
            {
                "active": {
                    "version": e.version,
                    "uri": e.uri,
                    "manifest_sha256": e.manifest_sha,
                    "data_cutoff": e.meta.data_cutoff,
                    "published_at": published,
                },
                "previous": previous,
                "registry": cfg.registry,
                "lineage": [_with_urls(s, e.manifest_sha, bool(published)) for s in steps],
            }
        )

    async def _registry_entries() -> tuple[reg.RegistryEntry | None, list[reg.RegistryEntry]]:
        if not cfg.registry:
            return None, []
        try:
            pointer = await asyncio.to_thread(reg.read_pointer, cfg.registry)
        except InputError:
            return None, []
        return (pointer.current, pointer.history) if pointer else (None, [])

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
        return respond({"model_version": ctx.engine().version, "last_error": manager.last_error})


def _with_urls(s: Step, loaded_sha: str, from_registry: bool) -> dict[str, Any]:
    """A step as JSON, with its reports' URLs; the bundle is checked against the hash it had
    when this server loaded it (the registry's, when it came from the registry)."""
    d = s.to_dict()
    if s.step == "bundle":
        d["recorded_sha256"] = loaded_sha
        d["verified"] = s.sha256 == loaded_sha if s.sha256 else None
        d["link"] = "named by the registry" if from_registry else "loaded by this server"
    d["reports"] = [{**r, "url": f"/ui/reports/{s.step}/{r['path']}"} for r in d["reports"]]
    return d
