"""Request bodies and server options of the recommendation server (pydantic, no I/O)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys.data.schema import EVENT_TYPES, ID_CONTROL_CHARS, ID_MAX_LEN, RATING_MAX, RATING_MIN


class ServeConfig(BaseModel):
    """Server options (the CLI fills them; every bound is a clear 4xx when broken)."""

    model_config = ConfigDict(extra="forbid")

    bundle: str | None = None
    registry: str | None = None
    live_store: str = "memory"
    """Where live events live: ``memory`` (in-process history + the local durable
    ``event_log``; one replica) or ``redis://`` / ``rediss://`` (shared by every replica)."""
    live_store_password: str | None = None
    """Access key of the Redis live store when the URL carries none (from a Secret)."""
    live_store_auth: Literal["key", "entra"] = "key"
    """``key``: the access key above (or none); ``entra``: Microsoft Entra ID tokens for the
    pod's workload identity (Azure Managed Redis with Entra authentication)."""
    event_log: str = "./serving-events"
    """Folder of daily JSONL partitions (or one ``.jsonl`` file) of the ``memory`` store."""
    live_history_len: int = Field(default=200, ge=1, le=10_000)
    """Most recent live events kept per user (older ones reach the model at the next retrain)."""
    live_ttl_days: float = Field(default=30.0, gt=0)
    """A user's live history expires this long after their last event (Redis)."""
    live_read_timeout_ms: float = Field(default=100.0, gt=0)
    """Bound on reading a user's live events; past it the request is served from the bundle."""
    live_write_timeout_ms: float = Field(default=2000.0, gt=0)
    """Bound on storing an event batch; past it the POST answers 503 (nothing acknowledged)."""
    live_retry_after_s: float = Field(default=1.0, gt=0)
    """After a store failure, requests skip the store this long (and 503s say Retry-After)."""
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
    health_window_s: float = Field(default=300.0, gt=0)
    """Sliding window of the served-recommendation health (coverage, Gini, sources, p99)."""
    health_bucket_s: float = Field(default=10.0, gt=0)
    """Step of that window: answers leave it a bucket at a time."""

    @model_validator(mode="after")
    def _health_window(self) -> ServeConfig:
        if self.health_bucket_s > self.health_window_s:
            raise ValueError("health_bucket_s must be at most health_window_s")
        return self


EventType = Literal["view", "click", "add_to_cart", "purchase", "rating"]
assert set(get_args(EventType)) == set(EVENT_TYPES)

_EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CONTROL = re.compile(ID_CONTROL_CHARS)


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=ID_MAX_LEN)
    item_id: str = Field(min_length=1, max_length=ID_MAX_LEN)
    event_type: EventType
    ts: datetime | None = None
    value: float | None = None
    event_id: str | None = None
    """Client-chosen id (letters, digits, ``._:-``): a retry with the same id after a failed
    or timed-out POST reaches the lake once. The server makes one when absent."""

    @field_validator("user_id", "item_id")
    @classmethod
    def _printable_id(cls, v: str) -> str:
        # the data gate's rule for the lake's ids: an event accepted here must pass it
        if _CONTROL.search(v):
            raise ValueError("ids may not hold control characters")
        return v

    @field_validator("value")
    @classmethod
    def _value(cls, v: float | None) -> float | None:
        if v is not None and not (RATING_MIN <= v <= RATING_MAX):
            raise ValueError(f"value must be a rating in [{RATING_MIN}, {RATING_MAX}]")
        return v

    @field_validator("event_id")
    @classmethod
    def _event_id(cls, v: str | None) -> str | None:
        if v is not None and not _EVENT_ID.match(v):
            raise ValueError("event_id: 1..128 characters of letters, digits and ._:-")
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
