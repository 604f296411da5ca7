"""The live store a URL names (``recsys serve --live-store``, ``RECSYS_LIVE_STORE``): the
choice of backend is configuration, the server only sees :class:`LiveStore`."""

from __future__ import annotations

from typing import Any

from recsys.errors import InputError
from recsys.serving.live import LiveStore
from recsys.serving.live_memory import EmbeddedLiveStore
from recsys.serving.live_redis import RedisLiveStore, redacted_url


def open_live_store(url: str, cfg: Any) -> LiveStore:
    """The backend ``url`` names (``memory`` or ``redis[s]://...``), configured from ``cfg``
    (a :class:`recsys.serving.schemas.ServeConfig`)."""
    if url in ("", "memory"):
        return EmbeddedLiveStore(cfg.event_log, cfg.live_history_len)
    if url.startswith(("redis://", "rediss://", "unix://")):
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


def describe(url: str, event_log: str) -> str:
    """The store for logs, without secrets."""
    if url in ("", "memory"):
        return f"memory, log {event_log}"
    return redacted_url(url)
