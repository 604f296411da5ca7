"""The Redis live store (Azure Managed Redis in production): writer, reader, stream reader.

Keys (one hash tag, ``{recsys}``, so the write below is one slot and stays a
single MULTI/EXEC on a clustered Redis too)::

    {recsys}:events        stream: one entry per accepted event, field ``e`` = its JSON
                           record; the ingestion log that the compaction DAG reads
    {recsys}:u:<user_id>   list: the user's last ``history_len`` events (LiveEvent
                           JSON), expiring ``ttl`` after their last event

Write: XADD of every event + RPUSH/LTRIM/PEXPIRE of each user's list in one
MULTI/EXEC; the POST answers 2xx only after EXEC's reply. Read: one LRANGE.

What survives what (Redis acknowledges EXEC once the commands are applied in memory
and, with AOF, appended to the AOF buffer, which is written before the reply):

- a replica killed: nothing lost, the store holds everything it acknowledged;
- the Redis process killed (``kill -9``) and restarted: nothing lost with AOF on
  (``appendonly yes``, either fsync policy: the write(2) precedes the reply);
- the Redis machine losing power: with ``appendfsync always`` nothing; with
  ``everysec`` (Redis' default, Azure Managed Redis' AOF) up to about one second
  of acknowledged events; without persistence, everything since the last RDB;
- a primary failing over to a replica: events acknowledged by the primary and not yet
  replicated are lost (replication is asynchronous; Azure Managed Redis' high
  availability has the same window).

Events lost that way were on no replica's lake either; the compaction reads the
stream through a consumer group and acknowledges only what it has published.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.serving.live import AcceptedEvent, LiveEvent, LiveStore, StoreHealth, StoreUnavailable

log = get_logger(__name__)

NAMESPACE = "{recsys}"
STREAM = f"{NAMESPACE}:events"
GROUP = "compaction"
CONSUMER = "compactor"
"""One consumer name for every compaction run: a rerun re-reads what a crashed run read."""


def user_key(user_id: str) -> str:
    return f"{NAMESPACE}:u:{user_id}"


ENTRA_SCOPE = "https://redis.azure.com/.default"


def auth_kwargs(auth: str, password: str | None) -> dict[str, Any]:
    """Client arguments for the store's authentication: ``key`` (the access key, from a
    Secret) or ``entra`` (Microsoft Entra ID through the pod's workload identity: tokens
    fetched and renewed by the maintained ``redis-entraid`` provider)."""
    if auth == "entra":
        try:
            from redis_entraid.cred_provider import create_from_default_azure_credential
        except ImportError:
            raise InputError(
                "live store auth 'entra' needs the redis-entraid package "
                "(pip install 'recsys[entra]')"
            ) from None
        return {"credential_provider": create_from_default_azure_credential((ENTRA_SCOPE,))}
    if auth != "key":
        raise InputError(f"live store auth {auth!r}: use key or entra")
    return {"password": password} if password else {}


# a lost connection is retried once (a pooled socket may be stale after a Redis restart);
# everything else fails fast and the server falls back or answers 503
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisLiveStore(LiveStore):
    backend = "redis"

    def __init__(
        self,
        url: str,
        password: str | None = None,
        auth: str = "key",
        history_len: int = 200,
        ttl_s: float = 30 * 86_400,
        read_timeout_s: float = 0.1,
        write_timeout_s: float = 2.0,
        backoff_s: float = 1.0,
    ) -> None:
        self.url = url
        self.history_len = history_len
        self.ttl_ms = int(ttl_s * 1000)
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.backoff_s = backoff_s
        kwargs = auth_kwargs(auth, password)
        self.client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=max(write_timeout_s, 0.05),
            socket_timeout=max(write_timeout_s, 0.05),
            retry=AsyncRetry(NoBackoff(), 1),
            retry_on_error=[redis.ConnectionError],
            health_check_interval=0,
            max_connections=256,
            protocol=2,
            **kwargs,
        )
        self._down_until = 0.0
        self.last_error = ""
        self._reads: list[tuple[str, asyncio.Future[list[bytes]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _fail(self, what: str, exc: BaseException) -> StoreUnavailable:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.last_error = f"{what}: {detail}"
        if not isinstance(exc, TimeoutError):
            # a refused or dropped connection: stop asking for a moment (requests fall back
            # at once instead of each paying a connect attempt); a slow answer does not trip it
            self._down_until = time.monotonic() + self.backoff_s
        return StoreUnavailable(f"live store {what}: {detail}")

    def _check(self, what: str) -> None:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"live store {what}: backing off after {self.last_error}")

    async def start(self) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.client.ping()
            log.info("redis live store at %s: connected", redacted_url(self.url))
        except (*_CONN_ERRORS, redis.RedisError) as exc:
            # the server starts anyway: reads fall back to the bundle, writes answer 503
            log.error(
                "redis live store at %s unreachable at start: %s", redacted_url(self.url), exc
            )

    async def append(self, events: Sequence[AcceptedEvent]) -> None:
        self._check("write")
        by_user: dict[str, list[str]] = defaultdict(list)
        try:
            async with asyncio.timeout(self.write_timeout_s):
                async with self.client.pipeline(transaction=True) as pipe:
                    for e in events:
                        pipe.xadd(STREAM, {"e": json.dumps(e.record(), separators=(",", ":"))})
                        by_user[e.user_id].append(e.live().encode())
                    for user, evs in by_user.items():
                        key = user_key(user)
                        pipe.rpush(key, *evs)
                        pipe.ltrim(key, -self.history_len, -1)
                        pipe.pexpire(key, self.ttl_ms)
                    await pipe.execute()
        except (*_CONN_ERRORS, redis.RedisError) as exc:
            raise self._fail("write", exc) from None

    async def recent(self, user_id: str) -> list[LiveEvent]:
        """One LRANGE; the reads of every request parsed in the same loop iteration share
        one pipelined round trip (under load one socket write and read serve them all)."""
        self._check("read")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bytes]] = loop.create_future()
        self._reads.append((user_id, fut))
        if len(self._reads) == 1:
            loop.call_soon(self._flush_reads)
        try:
            async with asyncio.timeout(self.read_timeout_s):
                raw = await fut
        except TimeoutError as exc:
            raise self._fail("read", exc) from None
        return [LiveEvent.decode(r) for r in raw]

    def _flush_reads(self) -> None:
        batch, self._reads = self._reads, []
        task = asyncio.get_running_loop().create_task(self._read_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_batch(self, batch: list[tuple[str, asyncio.Future[list[bytes]]]]) -> None:
        try:
            async with asyncio.timeout(self.read_timeout_s):
                async with self.client.pipeline(transaction=False) as pipe:
                    for user_id, _ in batch:
                        pipe.lrange(user_key(user_id), 0, -1)
                    results = await pipe.execute()
        except (*_CONN_ERRORS, redis.RedisError) as exc:
            err = self._fail("read", exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, fut), raw in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(raw)

    async def health(self) -> StoreHealth:
        try:
            self._check("ping")
            async with asyncio.timeout(max(self.read_timeout_s, 0.5)):
                await self.client.ping()
        except StoreUnavailable as exc:
            return StoreHealth(self.backend, False, str(exc))
        except (*_CONN_ERRORS, redis.RedisError) as exc:
            return StoreHealth(self.backend, False, str(self._fail("ping", exc)))
        return StoreHealth(self.backend, True, redacted_url(self.url))

    async def close(self) -> None:
        await self.client.aclose()


def redacted_url(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class RedisEventStream:
    """The compaction's side of the stream: a consumer group, read, acknowledge, trim.

    Entries read but not acknowledged stay in the group's pending list under one
    consumer name, and every read starts with that list: a run that crashed anywhere
    before acknowledging is repeated whole by the next, and the lake merge (dedupe by
    ``event_id``) makes the repetition harmless.
    """

    def __init__(
        self, url: str, password: str | None = None, auth: str = "key", timeout_s: float = 30.0
    ) -> None:
        kwargs = auth_kwargs(auth, password)
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 2),
            retry_on_error=[redis.ConnectionError],
            protocol=2,
            **kwargs,
        )

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 10_000) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
        """(entry id, record) of every pending entry, then of every new one; ``None`` for an
        entry that does not parse."""
        for start in ("0", ">"):
            cursor = start
            while True:
                resp: Any = self.client.xreadgroup(GROUP, CONSUMER, {STREAM: cursor}, count=count)
                entries = resp[0][1] if resp else []
                entries = [(i, f) for i, f in entries if f]  # trimmed-away pending ids
                if not entries:
                    break
                for entry_id, fields in entries:
                    try:
                        rec = json.loads(fields[b"e"])
                    except (KeyError, ValueError):
                        rec = None
                    yield entry_id, rec
                if start == "0":
                    cursor = entries[-1][0].decode()

    def ack(self, ids: Sequence[bytes], chunk: int = 10_000) -> None:
        for j in range(0, len(ids), chunk):
            self.client.xack(STREAM, GROUP, *ids[j : j + chunk])

    def trim(self) -> int:
        """Drop the entries every compaction has acknowledged; returns how many."""
        pending: Any = self.client.xpending(STREAM, GROUP)
        if pending and pending.get("pending"):
            floor = pending["min"]
        else:
            info: Any = self.client.xinfo_groups(STREAM)
            groups = {g["name"]: g for g in info}
            floor = groups[GROUP.encode()]["last-delivered-id"]
            if floor in (b"0-0", "0-0"):
                return 0
            # keep nothing delivered: everything up to and including the last id is acknowledged
            ms, _, seq = (floor.decode() if isinstance(floor, bytes) else floor).partition("-")
            floor = f"{ms}-{int(seq) + 1}"
        return int(self.client.xtrim(STREAM, minid=floor, approximate=False))

    def length(self) -> int:
        return int(self.client.xlen(STREAM))
