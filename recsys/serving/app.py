"""The real-time recommendation server: FastAPI + onnxruntime, no torch.

Endpoints (OpenAPI at ``/docs``), all JSON:
- ``GET|POST /v1/recommendations/{user_id}``: top-k with filters and explanations;
- ``POST /v1/events``: one event or a batch; durable (fsync) before 2xx, folded in at once;
- ``GET /v1/items/{item_id}/similar``;
- ``GET /v1/model``: the active and previous bundle;
- ``POST /v1/admin/rollback``, ``POST /v1/admin/reload`` (API key);
- ``/healthz``, ``/readyz``, ``/metrics``.

Everything that touches an engine runs on the event loop thread, so the live
histories need no lock; bundle loading runs in a worker thread and the swap
is one reference assignment on the loop, so a request finishes on the engine
it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar, get_args

import numpy as np
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.data.schema import EVENT_TYPES, RATING_MAX, RATING_MIN
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving import registry as reg
from recsys.serving.engine import Engine, load_engine, seen_mask
from recsys.serving.engine import Query as RecQuery

log = get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class ServeConfig(BaseModel):
    """Server options (the CLI fills them; every bound is a clear 4xx when broken)."""

    model_config = ConfigDict(extra="forbid")

    bundle: str | None = None
    registry: str | None = None
    event_log: str = "./serving-events"
    """Folder of daily JSONL partitions (or one ``.jsonl`` file): see :class:`EventLog`."""
    api_key: str | None = None
    default_k: int = Field(default=20, ge=1)
    max_k: int = Field(default=100, ge=1)
    max_id_len: int = Field(default=128, ge=1)
    max_batch: int = Field(default=1000, ge=1)
    max_list: int = Field(default=200, ge=1)
    """Most entries in a filter list (excluded items, categories) or feature map."""
    reload_interval_s: float = Field(default=2.0, gt=0)
    ort_threads: int = Field(default=1, ge=1)
    score_in_thread: bool = False
    """Score in a worker thread (the loop keeps parsing HTTP meanwhile; onnxruntime releases
    the GIL) rather than on the event loop itself. Off by default: on a small shared CPU the
    two thread hand-offs per batch cost more than the overlap gains (measured on 2 cores,
    4 clients: 0.50-0.73 ms of server CPU per request inline vs 0.86-1.02 in a thread, and a
    lower p99), and inline batching is as good (requests parsed while one batch scores
    wait in the socket buffers and form the next batch)."""
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest request body (a full batch of events fits well within the default 1 MiB)."""
    live_event_buffer: int = Field(default=200_000, ge=0)
    """Live events kept in memory to replay onto a newly loaded bundle."""


EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
assert set(get_args(EventType)) == set(EVENT_TYPES)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    event_type: EventType
    ts: datetime | None = None
    value: float | None = None

    @field_validator("value")
    @classmethod
    def _value(cls, v: float | None) -> float | None:
        if v is not None and not (RATING_MIN <= v <= RATING_MAX):
            raise ValueError(f"value must be a rating in [{RATING_MIN}, {RATING_MAX}]")
        return v


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[Event] = Field(min_length=1)


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(default=None, ge=1)
    exclude_seen: str = "all"
    include_categories: list[str] = Field(default_factory=list)
    exclude_categories: list[str] = Field(default_factory=list)
    exclude_items: list[str] = Field(default_factory=list)
    segment: str | None = Field(default=None, max_length=128)
    features: dict[str, str | float | int | None] | None = None


class ReloadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle_uri: str | None = Field(default=None, max_length=4096)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "recsys_request_latency_seconds", "Server-side request latency", ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.requests = Counter(
            "recsys_requests_total", "Requests by endpoint and outcome", ["endpoint", "outcome"],
            registry=r,
        )
        self.sources = Counter(
            "recsys_recommendations_total", "Recommendations by source (history, features, "
            "segment_popularity, global_popularity, events)", ["source"], registry=r,
        )
        self.model_info = Gauge(
            "recsys_model_info", "The active bundle (value 1)", ["version", "uri"], registry=r
        )
        self.foldins = Counter("recsys_foldins_total", "Events folded into a user history",
                               registry=r)
        self.events = Counter("recsys_events_total", "Events received by outcome", ["outcome"],
                              registry=r)
        self.coverage = Gauge(
            "recsys_served_item_coverage", "Share of the catalogue recommended at least once "
            "since the active bundle was loaded", registry=r,
        )
        self.reloads = Counter("recsys_bundle_reloads_total", "Bundle loads by outcome",
                               ["outcome"], registry=r)
        self.fsync = Histogram(
            "recsys_event_log_write_seconds", "Append + fsync of an event batch",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0), registry=r,
        )


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before they are buffered (pure ASGI,
    so the hot GET path pays one dict lookup)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413, detail="request body too large")
            return message

        await self.app(scope, limited, send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class EventLog:
    """Append-only JSONL; a batch is written and fdatasynced before the request returns 2xx.

    ``path`` ending in ``.jsonl`` is one file. Any other path is a folder partitioned like
    the lake, one file per UTC day of receipt and per process (so several replicas can
    share a volume): ``<path>/dt=YYYY-MM-DD/<host>-<pid>.jsonl``; each line has the lake's
    event columns (event_id, user_id, item_id, event_type, value, ts) plus receipt fields.
    """

    def __init__(self, path: str) -> None:
        self.root = path
        self.daily = not path.endswith(".jsonl")
        self.path = ""
        self._fd = -1
        self._day = ""
        self._open(datetime.now(UTC).date().isoformat())
        # one writer thread keeps appends ordered and off the event loop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog")
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._busy = False

    def _open(self, day: str) -> None:
        if self.daily:
            name = f"{socket.gethostname()}-{os.getpid()}.jsonl"
            path = os.path.join(self.root, f"dt={day}", name)
        else:
            path = self.root
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.path, self._day = fd, path, day

    def _write(self, data: bytes) -> None:
        day = datetime.now(UTC).date().isoformat()
        if self.daily and day != self._day:
            self._open(day)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        # fdatasync: the data and the new file size reach the disk; mtime need not
        os.fdatasync(self._fd)

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Return once ``rows`` are on disk. Group commit: batches that arrive during a
        write share the next write + fdatasync."""
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._queue.append((data, fut))
        if not self._busy:
            self._kick(loop)
        await fut

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        job = loop.run_in_executor(self._pool, self._write, b"".join(d for d, _ in batch))

        def done(f: asyncio.Future[None]) -> None:
            self._busy = False
            exc = f.exception()
            for _, waiter in batch:
                if not waiter.done():
                    if exc is not None:
                        waiter.set_exception(exc)
                    else:
                        waiter.set_result(None)
            if self._queue:
                self._kick(loop)

        job.add_done_callback(done)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        os.close(self._fd)


class Manager:
    """The active engine, the previous one (rollback), and the registry watcher."""

    def __init__(self, cfg: ServeConfig, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.active: Engine | None = None
        self.previous: Engine | None = None
        self.refused: dict[tuple[str, str], str] = {}
        self.live_events: deque[tuple[datetime, str, str, str, float | None]] = deque(
            maxlen=cfg.live_event_buffer or None
        )
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def _replay(self, engine: Engine) -> int:
        engine.live.clear()
        cutoff = None
        if engine.meta.data_cutoff:
            with contextlib.suppress(ValueError):
                cutoff = datetime.fromisoformat(engine.meta.data_cutoff)
                if cutoff.tzinfo is None:
                    cutoff = cutoff.replace(tzinfo=UTC)
        n = 0
        for ts, user, item, etype, value in self.live_events:
            if (cutoff is None or ts > cutoff) and engine.apply_event(user, item, etype, value):
                n += 1
        return n

    def activate(self, engine: Engine) -> None:
        """Swap ``engine`` in (on the loop thread); the old active one becomes the previous."""
        replayed = self._replay(engine)
        old = self.active
        self.active = engine
        if old is not None and old is not engine:
            dropped = self.previous
            self.previous = old
            if dropped is not None and dropped is not engine and dropped is not old:
                dropped.batcher.close()
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(version=engine.version, uri=engine.uri).set(1)
        self.metrics.coverage.set(0.0)
        settle_s = settle_heap()
        log.info("serving bundle %s (%s); %d live event(s) replayed; previous %s; "
                 "heap settled in %.1f ms", engine.version, engine.uri, replayed,
                 self.previous.version if self.previous else None, settle_s * 1e3)

    async def load(self, uri: str, expected_sha: str | None = None) -> Engine:
        """Load and verify a bundle off-loop, then swap it in; raise InputError if refused."""
        async with self._lock:
            return await self._load(uri, expected_sha)

    async def _load(self, uri: str, expected_sha: str | None) -> Engine:
        """The caller holds ``self._lock``: one load or pointer check at a time."""
        try:
            engine = await asyncio.to_thread(
                load_engine, uri, self.cfg.ort_threads, True, self.cfg.score_in_thread
            )
            if expected_sha is not None:
                got = engine.manifest_sha
                if got != expected_sha:
                    raise InputError(
                        f"{uri}: manifest sha256 {got[:12]} differs from the registry's "
                        f"{expected_sha[:12]}"
                    )
        except InputError as exc:
            self.metrics.reloads.labels(outcome="refused").inc()
            self.last_error = str(exc)
            log.error("bundle refused, still serving %s: %s",
                      self.active.version if self.active else None, exc)
            raise
        except Exception as exc:
            self.metrics.reloads.labels(outcome="refused").inc()
            self.last_error = f"{uri}: {exc}"
            log.exception("bundle refused (unexpected error), still serving %s",
                          self.active.version if self.active else None)
            raise InputError(f"{uri}: cannot load bundle: {exc}") from None
        self.activate(engine)
        self.metrics.reloads.labels(outcome="loaded").inc()
        self.last_error = None
        return engine

    async def check_registry(self) -> None:
        """Serve what the registry names, if it is not what is served already."""
        if not self.cfg.registry:
            return
        # one check at a time: the watcher and an admin call must not load the same bundle twice
        async with self._lock:
            await self._check_registry()

    async def _check_registry(self) -> None:
        assert self.cfg.registry
        try:
            entry = await asyncio.to_thread(reg.current, self.cfg.registry)
        except InputError as exc:
            log.error("registry unreadable: %s", exc)
            return
        if entry is None:
            return
        key = (entry.bundle_uri, entry.manifest_sha256)
        a = self.active
        if a is not None and (a.uri, a.manifest_sha) == key:
            return
        p = self.previous
        if p is not None and (p.uri, p.manifest_sha) == key:
            self.activate(p)
            self.metrics.reloads.labels(outcome="rollback").inc()
            return
        if key in self.refused:
            return
        try:
            await self._load(entry.bundle_uri, expected_sha=entry.manifest_sha256)
        except InputError as exc:
            self.refused[key] = str(exc)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reload_interval_s)
            try:
                await self.check_registry()
            except Exception:  # the watcher must survive anything and keep serving
                log.exception("registry check failed")


def settle_heap() -> float:
    """Collect garbage, then freeze every surviving object out of the cyclic GC's view.

    The loaded bundle, the libraries and the app are long-lived: without this, each
    full (generation 2) collection walks all of them with the GIL held, a 60-100 ms
    stall of every request (measured with a Gowalla-sized bundle). Called at start-up
    and after each swap; a swap's collect only walks what is not frozen yet. A dropped
    engine is still freed by reference counting (it holds no reference cycle)."""
    t0 = time.perf_counter()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


def _parse_list(raw: str | None, name: str, max_len: int) -> list[str]:
    if not raw:
        return []
    out = [p.strip() for p in raw.split(",") if p.strip()]
    if len(out) > max_len:
        raise InputError(f"{name}: at most {max_len} entries, got {len(out)}")
    return out


def create_app(cfg: ServeConfig, initial: Engine | None = None) -> FastAPI:
    metrics = Metrics()
    manager = Manager(cfg, metrics)
    event_log = EventLog(cfg.event_log)
    if initial is not None:
        manager.activate(initial)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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
            event_log.close()

    app = FastAPI(
        title="recsys", version="1", lifespan=lifespan,
        description="Personalised product recommendations (LightGCN fold-in, ONNX).",
    )
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    app.state.manager = manager
    app.state.metrics = metrics

    def timed(endpoint: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        hist = metrics.latency.labels(endpoint=endpoint)
        ok = metrics.requests.labels(endpoint=endpoint, outcome="ok")

        def deco(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @wraps(fn)
            async def inner(*args: P.args, **kwargs: P.kwargs) -> R:
                t0 = time.perf_counter()
                try:
                    out = await fn(*args, **kwargs)
                except HTTPException as exc:
                    outcome = "client_error" if exc.status_code < 500 else "unavailable"
                    metrics.requests.labels(endpoint=endpoint, outcome=outcome).inc()
                    raise
                except InputError as exc:
                    metrics.requests.labels(endpoint=endpoint, outcome="client_error").inc()
                    raise HTTPException(status_code=400, detail=str(exc)) from None
                except Exception:
                    metrics.requests.labels(endpoint=endpoint, outcome="server_error").inc()
                    raise
                hist.observe(time.perf_counter() - t0)
                ok.inc()
                return out

            return inner

        return deco

    def engine() -> Engine:
        e = manager.active
        if e is None:
            raise HTTPException(status_code=503, detail="no bundle loaded yet")
        return e

    def check_id(value: str, name: str) -> None:
        if not value or len(value) > cfg.max_id_len:
            raise HTTPException(
                status_code=422, detail=f"{name}: length must be 1..{cfg.max_id_len}"
            )

    def require_key(key: str | None) -> None:
        if not cfg.api_key:
            raise HTTPException(status_code=403, detail="server has no API key configured "
                                "(RECSYS_API_KEY); writes and admin are disabled")
        if key is None or not hmac.compare_digest(key.encode(), cfg.api_key.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

    async def write_access(x_api_key: str | None = Header(default=None)) -> None:
        # a route dependency runs before the body is validated: without the key a
        # malformed body gets 401, not a 422 that describes the API to anyone
        require_key(x_api_key)

    authorized = [Depends(write_access)]

    def respond(obj: dict[str, Any], status_code: int = 200) -> Response:
        return Response(content=json.dumps(obj, separators=(",", ":")),
                        media_type="application/json", status_code=status_code)

    async def recommend(user_id: str, body: RecommendBody) -> Response:
        check_id(user_id, "user_id")
        e = engine()
        k = body.k or cfg.default_k
        if k > cfg.max_k:
            raise HTTPException(status_code=422, detail=f"k: at most {cfg.max_k}, got {k}")
        for name in ("include_categories", "exclude_categories", "exclude_items"):
            if len(getattr(body, name)) > cfg.max_list:
                raise InputError(f"{name}: at most {cfg.max_list} entries")
        if body.features is not None and len(body.features) > cfg.max_list:
            raise InputError(f"features: at most {cfg.max_list} entries")
        q = RecQuery(
            k=k,
            exclude_seen_mask=seen_mask(body.exclude_seen),
            include_categories=body.include_categories,
            exclude_categories=body.exclude_categories,
            exclude_items=body.exclude_items,
            features=body.features,
            segment=body.segment,
        )
        body_json, source, idx = await e.recommend_body(user_id, q)
        if len(idx):
            fresh = int(np.count_nonzero(~e.served[idx]))
            if fresh:
                e.served[idx] = True
                e.n_served += fresh
                if e is manager.active:
                    metrics.coverage.set(e.n_served / max(e.n_items, 1))
        metrics.sources.labels(source=source).inc()
        return Response(content=body_json, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        e = manager.active
        if e is None:
            return JSONResponse({"ready": False, "error": manager.last_error}, status_code=503)
        return respond({"ready": True, "model_version": e.version})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def qparam(name: str, desc: str, kind: str = "string", where: str = "query") -> dict[str, Any]:
        return {"name": name, "in": where, "required": where == "path",
                "description": desc, "schema": {"type": kind}}

    rec_params = [
        qparam("user_id", "User id", where="path"),
        qparam("k", f"Number of items, 1..{cfg.max_k} (default {cfg.default_k})", "integer"),
        qparam("exclude_seen", "all (default) | none | comma list of event types whose "
               "items are excluded (so consumables can be re-bought)"),
        qparam("include_categories", "Comma list: only these categories"),
        qparam("exclude_categories", "Comma list: never these categories"),
        qparam("exclude_items", f"Comma list of item ids to leave out (at most {cfg.max_list})"),
        qparam("segment", "Segment of an unknown user (popularity fallback)"),
        qparam("f.<feature>", "Raw feature of an unknown user, e.g. f.age=31&f.country=DE"),
    ]

    def int_param(raw: str | None, name: str, default: int) -> int:
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPException(
                status_code=422, detail=f"{name}: not an integer: {raw[:20]!r}"
            ) from None
        if value < 1:
            raise HTTPException(status_code=422, detail=f"{name}: must be >= 1, got {value}")
        return value

    def str_param(raw: str | None, name: str, max_len: int) -> str | None:
        if raw is not None and len(raw) > max_len:
            raise HTTPException(status_code=422, detail=f"{name}: longer than {max_len}")
        return raw

    # Parameters are read from the request by hand: FastAPI's per-parameter validation
    # cost more CPU than scoring (profiled), and this endpoint is the hot path.
    @app.get("/v1/recommendations/{user_id}", openapi_extra={"parameters": rec_params})
    @timed("recommendations")
    async def get_recommendations(request: Request) -> Response:
        """Top-k for a user, with filters; cold-start features as ``f.<name>`` parameters."""
        qp = request.query_params
        user_id = request.path_params["user_id"]
        feats: dict[str, str | float | int | None] = {
            key[2:]: val for key, val in qp.items() if key.startswith("f.")
        }
        limit = cfg.max_list * (cfg.max_id_len + 1)
        body = RecommendBody.model_construct(
            k=int_param(qp.get("k"), "k", cfg.default_k),
            exclude_seen=str_param(qp.get("exclude_seen"), "exclude_seen", 100) or "all",
            include_categories=_parse_list(
                str_param(qp.get("include_categories"), "include_categories", limit),
                "include_categories", cfg.max_list),
            exclude_categories=_parse_list(
                str_param(qp.get("exclude_categories"), "exclude_categories", limit),
                "exclude_categories", cfg.max_list),
            exclude_items=_parse_list(
                str_param(qp.get("exclude_items"), "exclude_items", limit),
                "exclude_items", cfg.max_list),
            segment=str_param(qp.get("segment"), "segment", cfg.max_id_len),
            features=feats or None,
        )
        return await recommend(user_id, body)

    @app.post("/v1/recommendations/{user_id}")
    @timed("recommendations")
    async def post_recommendations(user_id: str, body: RecommendBody) -> Response:
        """Same as GET, with filters and cold-start ``features`` in a JSON body."""
        return await recommend(user_id, body)

    @app.get("/v1/items/{item_id}/similar", openapi_extra={"parameters": [
        qparam("item_id", "Item id", where="path"),
        qparam("k", f"Number of items, 1..{cfg.max_k} (default 10)", "integer")]})
    @timed("similar")
    async def similar(request: Request) -> Response:
        """Items closest to ``item_id`` (cosine of the final item embeddings)."""
        item_id = request.path_params["item_id"]
        k = int_param(request.query_params.get("k"), "k", 10)
        check_id(item_id, "item_id")
        if k > cfg.max_k:
            raise HTTPException(status_code=422, detail=f"k: at most {cfg.max_k}, got {k}")
        try:
            return respond(engine().similar(item_id, k))
        except KeyError:
            raise HTTPException(status_code=404, detail=f"unknown item {item_id!r}") from None

    @app.post("/v1/events", status_code=202, dependencies=authorized)
    @timed("events")
    async def post_events(payload: Event | EventBatch | list[Event] = Body(...)) -> Response:
        """Append events to the durable log (fsync), then fold them into the histories."""
        events = (
            [payload] if isinstance(payload, Event)
            else payload.events if isinstance(payload, EventBatch) else payload
        )
        if not events:
            raise HTTPException(status_code=422, detail="no events")
        if len(events) > cfg.max_batch:
            raise HTTPException(
                status_code=413, detail=f"batch of {len(events)} events; at most {cfg.max_batch}"
            )
        for ev in events:
            check_id(ev.user_id, "user_id")
            check_id(ev.item_id, "item_id")
        e = manager.active
        now = datetime.now(UTC)
        rows = []
        for ev in events:
            ts = ev.ts if ev.ts is not None else now
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            rows.append({
                "event_id": uuid.uuid4().hex,
                "user_id": ev.user_id,
                "item_id": ev.item_id,
                "event_type": ev.event_type,
                "value": ev.value,
                "ts": ts.isoformat(),
                "received_at": now.isoformat(),
                "model_version": e.version if e else None,
                "known_item": bool(e is not None and ev.item_id in e.item_index),
            })
        t0 = time.perf_counter()
        await event_log.append(rows)
        metrics.fsync.observe(time.perf_counter() - t0)
        # the engine may have been swapped while the log was written: fold into the current one
        e = manager.active
        folded = 0
        for ev, row in zip(events, rows, strict=True):
            ts = datetime.fromisoformat(str(row["ts"]))
            manager.live_events.append((ts, ev.user_id, ev.item_id, ev.event_type, ev.value))
            if e is not None and e.apply_event(ev.user_id, ev.item_id, ev.event_type, ev.value):
                folded += 1
        metrics.foldins.inc(folded)
        metrics.events.labels(outcome="folded").inc(folded)
        metrics.events.labels(outcome="unknown_item").inc(len(events) - folded)
        return respond({
            "accepted": len(events),
            "folded": folded,
            "ignored_unknown_item": len(events) - folded,
            "event_ids": [r["event_id"] for r in rows],
            "model_version": e.version if e else None,
        }, status_code=202)

    @app.get("/v1/model")
    async def model_info() -> Response:
        a, p = manager.active, manager.previous
        return respond({
            "active": {"version": a.version, "uri": a.uri} if a else None,
            "previous": {"version": p.version, "uri": p.uri} if p else None,
            "registry": cfg.registry,
            "last_error": manager.last_error,
        })

    @app.post("/v1/admin/rollback", dependencies=authorized)
    @timed("admin")
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
        return respond({"model_version": engine().version})

    @app.post("/v1/admin/reload", dependencies=authorized)
    @timed("admin")
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
        return respond({"model_version": engine().version, "last_error": manager.last_error})

    # The two hot read paths are also mounted as plain Starlette routes ahead of FastAPI's:
    # FastAPI's per-request dependency solving cost about a quarter of the CPU of a
    # recommendation (profiled); the FastAPI routes above still document them in OpenAPI.
    from starlette.routing import Route

    app.router.routes.insert(0, Route("/v1/recommendations/{user_id}", get_recommendations,
                                      methods=["GET"], include_in_schema=False))
    app.router.routes.insert(0, Route("/v1/items/{item_id}/similar", similar, methods=["GET"],
                                      include_in_schema=False))
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
    log.info("listening on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")
