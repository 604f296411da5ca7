"""The real-time recommendation server: FastAPI + onnxruntime, no torch. This module only
assembles it: options (:mod:`.schemas`), bundles (:mod:`.bundles`), live state
(:mod:`.live`), routes (:mod:`.routes_read`, :mod:`.routes_write`, :mod:`.routes_ops`).

Endpoints (OpenAPI at ``/docs``), all JSON:
- ``GET|POST /v1/recommendations/{user_id}``: top-k with filters and explanations, the
  user's live events folded in;
- ``POST /v1/events``: one event or a batch; stored in the live store before 2xx;
- ``GET /v1/items/{item_id}/similar``;
- ``GET /v1/model``: the active and previous bundle; ``GET /v1/ops/lineage``: where the
  active one came from; ``GET /v1/ops/health``: served-recommendation health (window);
- ``GET /v1/users?prefix=``, ``GET /v1/users/{user_id}/history``, ``GET /v1/items?ids=``,
  ``GET /v1/catalog``: what a storefront shows besides recommendations;
- ``/ui/`` (storefront) and ``/ui/ops`` (operations view): pages on the API above;
- ``POST /v1/admin/rollback``, ``POST /v1/admin/reload`` (API key);
- ``/healthz``, ``/readyz``, ``/metrics``.

Everything that touches an engine runs on the event loop thread; bundle loading runs
in a worker thread and the swap is one reference assignment on the loop, so a request
finishes on the engine it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving import registry as reg
from recsys.serving.bundles import Manager, settle_heap
from recsys.serving.context import ServerContext
from recsys.serving.engine import Engine, load_engine
from recsys.serving.health import HealthCollector, ServedHealth
from recsys.serving.live_backends import describe, open_live_store
from recsys.serving.metrics import Metrics
from recsys.serving.middleware import BodyLimit
from recsys.serving.routes_browse import add_browse_routes
from recsys.serving.routes_ops import add_ops_routes
from recsys.serving.routes_read import add_read_routes
from recsys.serving.routes_ui import add_ui_routes
from recsys.serving.routes_write import add_write_routes
from recsys.serving.schemas import ServeConfig

log = get_logger(__name__)

__all__ = ["ServeConfig", "create_app", "serve"]


def create_app(cfg: ServeConfig, initial: Engine | None = None) -> FastAPI:
    metrics = Metrics()
    health = ServedHealth(cfg.health_window_s, cfg.health_bucket_s)
    metrics.registry.register(HealthCollector(health))
    manager = Manager(cfg, metrics, health)
    store = open_live_store(cfg.live_store, cfg)
    ctx = ServerContext(cfg, metrics, manager, store, health)
    if initial is not None:
        manager.activate(initial)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        watcher = None
        if cfg.registry:
            await manager.check_registry()
            watcher = asyncio.create_task(manager.watch())
        if not cfg.api_key:
            log.warning("no API key configured (RECSYS_API_KEY): writes and admin are refused")
        settle_heap()  # the server's own start-up objects are long-lived too
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            await store.close()

    app = FastAPI(
        title="recsys",
        version="1",
        lifespan=lifespan,
        description="Personalised product recommendations (LightGCN fold-in, ONNX).",
    )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.state.ctx = ctx
    app.state.manager = manager
    app.state.metrics = metrics
    add_ops_routes(app, ctx)
    add_write_routes(app, ctx)
    add_read_routes(app, ctx)
    add_browse_routes(app, ctx)
    add_ui_routes(app, ctx)
    return app


def serve(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the bundle (exit 2 if it is unusable), then run uvicorn."""
    import uvicorn

    if not cfg.bundle and not cfg.registry:
        raise InputError("give --bundle URI or --registry URI")
    initial = None
    if cfg.bundle:
        initial = load_engine(cfg.bundle, cfg.ort_threads, True, cfg.score_in_thread)
    elif cfg.registry:
        entry = reg.current(cfg.registry)
        if entry is not None:
            initial = load_engine(entry.bundle_uri, cfg.ort_threads, True, cfg.score_in_thread)
    app = create_app(cfg, initial)
    log.info(
        "listening on http://%s:%d (live store: %s)",
        host,
        port,
        describe(cfg.live_store, cfg.event_log),
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
