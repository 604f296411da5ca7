"""The bundle manager: load and verify a bundle off-loop, swap it in, roll back, watch the
registry. The engines hold no live state, so a swap needs no replay."""

from __future__ import annotations

import asyncio
import gc
import time

from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving import registry as reg
from recsys.serving.engine import Engine, load_engine
from recsys.serving.health import ServedHealth
from recsys.serving.metrics import Metrics
from recsys.serving.schemas import ServeConfig

log = get_logger(__name__)


class Manager:
    """The active engine, the previous one (rollback), and the registry watcher."""

    def __init__(
        self, cfg: ServeConfig, metrics: Metrics, health: ServedHealth | None = None
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.health = health or ServedHealth(cfg.health_window_s, cfg.health_bucket_s)
        self.active: Engine | None = None
        self.previous: Engine | None = None
        self.refused: dict[tuple[str, str], str] = {}
        self.last_error: str | None = None
        self._lock = asyncio.Lock()

    def activate(self, engine: Engine) -> None:
        """Swap ``engine`` in (on the loop thread); the old active one becomes the previous."""
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
        self.health.activate(engine, engine.n_items, engine.cutoff_us)
        settle_s = settle_heap()
        log.info(
            "serving bundle %s (%s); previous %s; heap settled in %.1f ms",
            engine.version,
            engine.uri,
            self.previous.version if self.previous else None,
            settle_s * 1e3,
        )

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
            log.error(
                "bundle refused, still serving %s: %s",
                self.active.version if self.active else None,
                exc,
            )
            raise
        except Exception as exc:
            self.metrics.reloads.labels(outcome="refused").inc()
            self.last_error = f"{uri}: {exc}"
            log.exception(
                "bundle refused (unexpected error), still serving %s",
                self.active.version if self.active else None,
            )
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
