"""Live state across replicas: real ``recsys serve`` processes sharing a real ``redis-server``.

What a user does on one replica shows on every other one at once; every event that got a
2xx reaches the lake exactly once through the compaction, whatever was killed meanwhile;
a store that is down or slow never yields a 2xx for an unstored event nor hangs a read.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest
from redis_helpers import RedisServer
from srv_helpers import API_KEY, Server, start_server, stop_server

from recsys.data.lake import list_partitions, read_partition
from recsys.data.schema import EVENTS
from recsys.orchestration.compaction import compact_stream
from recsys.serving.live_redis import STREAM

H = {"X-API-Key": API_KEY}
DAY = dt.date(2026, 11, 30)


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis").start()
    yield r
    r.stop()


def _replicas(tmp: Path, bundle: str, url: str, n: int, *extra: str) -> list[Server]:
    return [start_server(tmp, "--bundle", bundle, "--live-store", url, *extra) for _ in range(n)]


def _top(c: httpx.Client, user: str, k: int = 10) -> list[str]:
    r = c.get(f"/v1/recommendations/{user}", params={"k": k})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["live_state"] == "ok"
    return [it["item_id"] for it in body["items"]]


def test_event_on_one_replica_is_reflected_on_every_other(
    bundles: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    servers = _replicas(tmp_path, bundles["v1"], redis_server.url, 3)
    try:
        a, b, c = (s.client() for s in servers)
        rng = random.Random(7)
        users = rng.sample([f"u{j}" for j in range(300)], 200)
        reflected = 0
        for user in users:
            bought = _top(b, user)[0]
            r = a.post(
                "/v1/events",
                json={"user_id": user, "item_id": bought, "event_type": "purchase"},
                headers=H,
            )
            assert r.status_code == 202, r.text
            on_b, on_c = _top(b, user), _top(c, user)
            assert on_b == on_c  # same store, same bundle: the same answer everywhere
            reflected += bought not in on_b and bought not in on_c
        assert reflected == 200
        stream = redis_server.client().xlen(STREAM)
        assert stream == 200
    finally:
        for s in servers:
            stop_server(s)


class Poster(threading.Thread):
    """Posts batches of uniquely-identified events until stopped; remembers every id that
    got a 2xx (the accepted ones) and counts the refusals and broken connections."""

    def __init__(self, urls: list[str], seed: int) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.rng = random.Random(seed)
        self.seed = seed
        self.accepted: set[str] = set()
        self.refused = 0
        self.broken = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=5.0) as c:
            while not self.stop.is_set():
                batch = []
                for _ in range(self.rng.randint(1, 5)):
                    n += 1
                    batch.append(
                        {
                            "event_id": f"t{self.seed}-{n}",
                            "user_id": f"u{self.rng.randrange(300)}",
                            "item_id": f"i{self.rng.randrange(400)}",
                            "event_type": self.rng.choice(["view", "click", "purchase"]),
                            "ts": f"{DAY.isoformat()}T{self.rng.randrange(24):02d}:00:00Z",
                        }
                    )
                url = self.rng.choice(self.urls)
                try:
                    r = c.post(f"{url}/v1/events", json={"events": batch}, headers=H)
                except httpx.TransportError:
                    self.broken += 1
                    time.sleep(0.01)
                    continue
                if r.status_code == 202:
                    self.accepted.update(e["event_id"] for e in batch)
                else:
                    assert r.status_code == 503, r.text
                    assert r.headers.get("retry-after")
                    self.refused += 1
                    time.sleep(0.01)


def test_no_accepted_event_is_lost_when_a_replica_and_redis_die(
    bundles: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    servers = _replicas(tmp_path, bundles["v1"], redis_server.url, 3)
    posters = [Poster([s.url for s in servers], seed) for seed in range(4)]
    try:
        for p in posters:
            p.start()
        time.sleep(2.0)
        servers[0].proc.kill()  # kill -9 one replica mid-run
        servers[0].proc.wait()
        time.sleep(1.0)
        redis_server.kill9()  # and the store itself (AOF, appendfsync always)
        time.sleep(0.5)
        redis_server.start()
        servers[0] = start_server(
            tmp_path,
            "--bundle",
            bundles["v1"],
            "--live-store",
            redis_server.url,
            port=int(servers[0].url.rsplit(":", 1)[1]),
        )
        time.sleep(2.0)
    finally:
        for p in posters:
            p.stop.set()
        for p in posters:
            p.join(timeout=30)
        for s in servers:
            stop_server(s)
    accepted = set().union(*(p.accepted for p in posters))
    refused = sum(p.refused for p in posters)
    broken = sum(p.broken for p in posters)
    assert len(accepted) > 500 and refused + broken > 0  # the faults did happen under load

    lake = str(tmp_path / "lake")
    compact_stream(redis_server.url, lake, DAY)
    ids = pc.unique(read_partition(lake, EVENTS, DAY).column("event_id")).to_pylist()
    rows = read_partition(lake, EVENTS, DAY).num_rows
    counts = {
        "accepted": len(accepted),
        "in_lake": len(accepted & set(ids)),
        "duplicates": rows - len(ids),
        "refused_batches": refused,
        "broken_connections": broken,
    }
    print("fault test:", json.dumps(counts))
    assert counts["in_lake"] == counts["accepted"]
    assert counts["duplicates"] == 0
    assert list_partitions(lake, EVENTS) == [DAY]


def _post_day(url: str, n: int, prefix: str, day: dt.date = DAY) -> list[str]:
    ids = [f"{prefix}-{j}" for j in range(n)]
    events = [
        {
            "event_id": i,
            "user_id": f"u{j % 50}",
            "item_id": f"i{j % 70}",
            "event_type": "view",
            "ts": f"{day.isoformat()}T10:00:00Z",
        }
        for j, i in enumerate(ids)
    ]
    r = httpx.post(f"{url}/v1/events", json={"events": events}, headers=H, timeout=10)
    assert r.status_code == 202, r.text
    return ids


def test_compaction_killed_between_publish_and_ack_then_rerun(
    bundles: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    server = _replicas(tmp_path, bundles["v1"], redis_server.url, 1)[0]
    lake = str(tmp_path / "lake")
    try:
        first = _post_day(server.url, 300, "a")
        later = _post_day(server.url, 40, "late", DAY + dt.timedelta(days=1))

        class Crash(Exception):
            pass

        def crash() -> None:
            raise Crash

        with pytest.raises(Crash):
            compact_stream(redis_server.url, lake, DAY, _after_publish=crash)
        assert read_partition(lake, EVENTS, DAY).num_rows == 300  # published, not acknowledged
        second = _post_day(server.url, 100, "b")
        compact_stream(redis_server.url, lake, DAY)
        ids = read_partition(lake, EVENTS, DAY).column("event_id").to_pylist()
        assert sorted(ids) == sorted(first + second)  # no loss, no duplicate
        # the next day's events stay pending until their day is compacted; the trim drops
        # the acknowledged prefix of the stream (what was acknowledged after the first
        # pending entry waits for it)
        assert redis_server.client().xlen(STREAM) == len(later) + len(second)
        compact_stream(redis_server.url, lake, DAY + dt.timedelta(days=1))
        assert sorted(
            read_partition(lake, EVENTS, DAY + dt.timedelta(days=1)).column("event_id").to_pylist()
        ) == sorted(later)
        assert redis_server.client().xlen(STREAM) == 0
    finally:
        stop_server(server)


def test_store_down_reads_fall_back_and_writes_refuse(
    bundles: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    server = _replicas(tmp_path, bundles["v1"], redis_server.url, 1)[0]
    try:
        with server.client() as c:
            user = "u3"
            bought = _top(c, user)[0]
            r = c.post(
                "/v1/events",
                json={"user_id": user, "item_id": bought, "event_type": "purchase"},
                headers=H,
            )
            assert r.status_code == 202
            assert bought not in _top(c, user)
            redis_server.stop()
            t0 = time.monotonic()
            r = c.get(f"/v1/recommendations/{user}", params={"k": 10})
            assert r.status_code == 200 and r.json()["live_state"] == "unavailable"
            assert time.monotonic() - t0 < 2.0
            w = c.post(
                "/v1/events",
                json={"user_id": user, "item_id": "i1", "event_type": "view"},
                headers=H,
            )
            assert w.status_code == 503 and w.headers["retry-after"] == "1"
            assert "not stored" in w.json()["detail"]
            ready = c.get("/readyz")
            assert ready.status_code == 200 and ready.json()["live_store"]["ok"] is False
            metrics = c.get("/metrics").text
            assert 'recsys_live_reads_total{outcome="unavailable"}' in metrics
            assert 'recsys_events_total{outcome="unavailable"} 1.0' in metrics
            # the served health counts that answer as the store fallback (two before it: ok)
            answers = c.get("/v1/ops/health").json()["source_answers"]
            assert answers["store_fallback"] == 1 and answers["history"] == 2
            assert 'recsys_served_source_share{source="store_fallback"} 0.333' in metrics

            redis_server.start()  # AOF: the purchase is still there
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                body = c.get(f"/v1/recommendations/{user}", params={"k": 10}).json()
                if body["live_state"] == "ok":
                    break
                time.sleep(0.2)
            assert body["live_state"] == "ok"
            assert bought not in [it["item_id"] for it in body["items"]]
            assert c.get("/readyz").json()["live_store"]["ok"] is True
    finally:
        stop_server(server)


def test_slow_store_never_hangs_a_request(
    bundles: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    cfg = tmp_path / "serve.json"
    cfg.write_text(json.dumps({"live_read_timeout_ms": 50, "live_write_timeout_ms": 300}))
    server = _replicas(tmp_path, bundles["v1"], redis_server.url, 1, "--config", str(cfg))[0]
    try:
        with server.client() as c:
            _top(c, "u1")
            redis_server.pause()  # a store that accepts connections and never answers
            t0 = time.monotonic()
            r = c.get("/v1/recommendations/u1")
            read_s = time.monotonic() - t0
            t0 = time.monotonic()
            w = c.post(
                "/v1/events",
                json={"user_id": "u1", "item_id": "i1", "event_type": "view"},
                headers=H,
            )
            write_s = time.monotonic() - t0
            redis_server.resume()
        assert r.status_code == 200 and r.json()["live_state"] == "unavailable"
        assert read_s < 0.5, read_s
        assert w.status_code == 503 and write_s < 1.0, write_s
    finally:
        stop_server(server)


def test_store_url_auth_and_redaction() -> None:
    from recsys.errors import InputError
    from recsys.serving.live_backends import open_live_store
    from recsys.serving.live_redis import RedisLiveStore, redacted_url
    from recsys.serving.schemas import ServeConfig

    with pytest.raises(InputError, match="use memory, redis://"):
        open_live_store("postgres://x", ServeConfig())
    assert redacted_url("rediss://user:secret@host:10000/0") == "rediss://***@host:10000/0"
    # Entra ID (no Azure here: the provider fetches its first token lazily, on connect)
    store = RedisLiveStore("rediss://amr.westeurope.redis.azure.net:10000/0", auth="entra")
    provider = store.client.connection_pool.connection_kwargs["credential_provider"]
    assert type(provider).__name__ == "EntraIdCredentialsProvider"
    store = RedisLiveStore("rediss://amr.westeurope.redis.azure.net:10000/0", password="k")
    assert store.client.connection_pool.connection_kwargs["password"] == "k"
    with pytest.raises(InputError, match="use key or entra"):
        RedisLiveStore("redis://h:1/0", auth="token")
