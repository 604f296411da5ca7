"""Load test of the recommendation server on loopback; prints one JSON line per measurement.

    .venv/bin/python benchmarks/serve_load.py     # Gowalla-sized: 29,858 users, 40,981 items, d=64
    .venv/bin/python benchmarks/serve_load.py --users 2000 --items 3000 --duration 2   # quick
    .venv/bin/python benchmarks/serve_load.py --item-item 300   # bundles with an item-item term

What it does: builds two random bundles of the given size (latency depends on
the table sizes only), publishes the first to a local registry, starts
``recsys serve --registry`` in a subprocess, and drives it from a *separate*
client process (asyncio + aiohttp, keep-alive connections):
- ``load``: GET /v1/recommendations/<random known user>?k=20 by N concurrent clients
  for ``--duration`` seconds: client-side p50/p99 latency, throughput, errors;
- ``event_to_visible``: POST a purchase of the user's current top item, then GET
  until the item has left the list (it is now seen): time from the POST to that GET's
  answer; next to it, ``disk_write_fdatasync``: the same append + fdatasync without the
  server (the floor of a durable POST on this disk);
- ``swap``: the registry is pointed at the second bundle during a load run: failed
  requests (must be 0) and the versions answered.

``--live-store redis`` runs everything twice in the same run, first with the embedded
(memory) live store, then with a real ``redis-server`` (started here on a free port,
AOF on, ``--redis-fsync``) shared by two replicas: the event-to-visible loop POSTs to
replica A and GETs from replica B; ``ratio`` lines give Redis / memory per measurement.
Server, load generator and everything else share the same CPUs: say so with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

API_KEY = "bench-key"


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1e3, q)) if xs else float("nan")


# ---------------------------------------------------------------- client process


async def _load(url: str, users: int, concurrency: int, duration: float) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    errors: list[str] = []
    versions: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(base_url=url, connector=conn) as s:

        async def worker(seed: int) -> None:
            rnd = random.Random(seed)
            while time.perf_counter() < deadline:
                u = rnd.randrange(users)
                t0 = time.perf_counter()
                try:
                    async with s.get(f"/v1/recommendations/u{u}", params={"k": "20"}) as r:
                        body = await r.read()
                        if r.status != 200:
                            errors.append(f"{r.status}: {body[:200]!r}")
                            continue
                except aiohttp.ClientError as exc:
                    errors.append(repr(exc))
                    continue
                lat.append(time.perf_counter() - t0)
                v = json.loads(body)["model_version"]
                versions[v] = versions.get(v, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(_pct(lat, 50), 3),
        "p99_ms": round(_pct(lat, 99), 3),
        "max_ms": round(_pct(lat, 100), 3),
        "versions": versions,
    }


async def _event_to_visible(url: str, read_url: str, users: int, n: int) -> dict[str, Any]:
    """POST a purchase to ``url``, then GET from ``read_url`` (another replica, or the same)."""
    import aiohttp

    lat: list[float] = []
    post_lat: list[float] = []
    misses = 0
    rnd = random.Random(7)
    headers = {"X-API-Key": API_KEY}
    async with (
        aiohttp.ClientSession(base_url=url, headers=headers) as s,
        aiohttp.ClientSession(base_url=read_url) as reader,
    ):
        for _ in range(n):
            user = f"u{rnd.randrange(users)}"
            async with reader.get(f"/v1/recommendations/{user}", params={"k": "10"}) as r:
                top = (await r.json())["items"][0]["item_id"]
            t0 = time.perf_counter()
            async with s.post(
                "/v1/events", json={"user_id": user, "item_id": top, "event_type": "purchase"}
            ) as r:
                assert r.status == 202, await r.text()
            post_lat.append(time.perf_counter() - t0)
            async with reader.get(f"/v1/recommendations/{user}", params={"k": "10"}) as r:
                items = [i["item_id"] for i in (await r.json())["items"]]
            lat.append(time.perf_counter() - t0)
            misses += top in items
    return {
        "events": n,
        "not_visible_on_next_get": misses,
        "post_p50_ms": round(_pct(post_lat, 50), 3),
        "post_p99_ms": round(_pct(post_lat, 99), 3),
        "event_to_visible_p50_ms": round(_pct(lat, 50), 3),
        "event_to_visible_p99_ms": round(_pct(lat, 99), 3),
    }


def client_main(args: argparse.Namespace) -> None:
    if args.mode == "load":
        out = asyncio.run(_load(args.url, args.users, args.concurrency, args.duration))
    else:
        out = asyncio.run(
            _event_to_visible(args.url, args.read_url or args.url, args.users, args.n)
        )
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- driver


def _client(url: str, users: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "client", "--url", url, "--users", str(users), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(p: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = p.communicate(timeout=600)
    if p.returncode != 0:
        raise SystemExit(f"client failed ({p.returncode})")
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


WRK_SCRIPT = """
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/v1/recommendations/u" .. math.random(0, %d) .. "?k=20")
end
"""


def _wrk(url: str, users: int, concurrency: int, duration: float, work: Path) -> dict[str, Any]:
    """Debian's wrk (C, event loop): the load generator that takes least CPU from the server."""
    script = work / "random_user.lua"
    script.write_text(WRK_SCRIPT % (concurrency, users - 1))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(tok: str) -> float:
        unit = tok.lstrip("0123456789.")
        return float(tok[: len(tok) - len(unit)]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    res: dict[str, Any] = {"concurrency": concurrency, "client": "wrk"}
    errors = 0
    for line in out.splitlines():
        f = line.split()
        if line.strip().startswith(("50%", "99%")):
            res[f"p{f[0][:-1]}_ms"] = round(ms(f[1]), 3)
        elif "requests in" in line:
            res["requests"] = int(f[0])
        elif line.startswith("Requests/sec"):
            res["rps"] = float(f[1])
        elif "Non-2xx" in line:
            errors += int(f[-1])
        elif line.strip().startswith("Socket errors"):
            errors += sum(int(x.rstrip(",")) for x in f[3::2])
    res["errors"] = errors
    return res


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _disk_fdatasync(folder: Path, n: int) -> dict[str, Any]:
    """The disk alone: append one event-sized line and fdatasync it, ``n`` times (5 ms apart,
    like the event-to-visible loop), in the folder of the server's event log."""
    line = (
        json.dumps(
            {
                "event_id": "0" * 32,
                "user_id": "u12345",
                "item_id": "i12345",
                "event_type": "purchase",
                "value": None,
                "ts": "2026-11-28T10:00:00.000000+00:00",
                "received_at": "2026-11-28T10:00:00.000000+00:00",
                "model_version": "v1",
                "known_item": True,
            }
        ).encode()
        + b"\n"
    )
    path = folder / "disk_probe.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lat = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, line)
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t0)
            time.sleep(0.005)
    finally:
        os.close(fd)
        path.unlink()
    return {
        "writes": n,
        "p50_ms": round(_pct(lat, 50), 3),
        "p99_ms": round(_pct(lat, 99), 3),
        "max_ms": round(_pct(lat, 100), 3),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_bundle(path: Path, version: str, seed: int, args: argparse.Namespace) -> float:
    from recsys.bundle import BundleMeta, write_bundle
    from recsys.export.synthetic import synthetic_tables

    t0 = time.perf_counter()
    t = synthetic_tables(
        n_users=args.users,
        n_items=args.items,
        dim=args.dim,
        num_layers=3,
        edges_per_user=args.edges_per_user,
        n_categories=50,
        segments=("DE", "FR", "IT", "ES", "PL"),
        seed=seed,
        scale=0.3,
        item_item_width=args.item_item,
    )
    meta = BundleMeta(
        version=version,
        num_layers=3,
        embedding_dim=args.dim,
        num_users=args.users,
        num_items=args.items,
        segment_feature="country",
    )
    write_bundle(t, str(path), meta)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--users", type=int, required=True)
    c.add_argument("--mode", choices=["load", "event"], default="load")
    c.add_argument("--concurrency", type=int, default=1)
    c.add_argument("--duration", type=float, default=5.0)
    c.add_argument("--n", type=int, default=200)
    c.add_argument("--read-url", default=None)
    ap.add_argument("--users", type=int, default=29858)
    ap.add_argument("--items", type=int, default=40981)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--edges-per-user", type=int, default=27)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", default="1,4,32")
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument(
        "--work-dir", default=None, help="kept after the run (default: a temporary folder, removed)"
    )
    ap.add_argument(
        "--client",
        choices=["auto", "wrk", "aiohttp"],
        default="auto",
        help="load generator: wrk if installed (auto), else aiohttp in a process",
    )
    ap.add_argument(
        "--item-item",
        type=int,
        default=0,
        help="entries per item of a random item-item term in the bundles (0: none; 300: the "
        "training default)",
    )
    ap.add_argument(
        "--live-store",
        choices=["memory", "redis"],
        default="memory",
        help="redis: run memory and then Redis (two replicas) in the same run",
    )
    ap.add_argument(
        "--redis-fsync",
        choices=["always", "everysec"],
        default="everysec",
        help="the Redis AOF fsync policy (everysec: Azure Managed Redis' AOF)",
    )
    args = ap.parse_args()
    if args.item_item < 0:
        ap.error("--item-item: entries per item, 0 or more")
    if args.cmd == "client":
        client_main(args)
        return

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="serve-load-"))
    try:
        _run(args, work)
    finally:
        if args.work_dir is None:  # two Gowalla-sized bundles: ~0.5 GB a run
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> None:
    """Build the two bundles in ``work``, run every store's load, print the ratios."""
    from recsys.serving import registry

    b1, b2, reg = work / "b1", work / "b2", str(work / "registry")
    build_s = [_make_bundle(b1, "v1", 1, args), _make_bundle(b2, "v2", 2, args)]
    registry.publish(reg, str(b1))
    print(
        json.dumps(
            {
                "bench": "setup",
                "users": args.users,
                "items": args.items,
                "dim": args.dim,
                "bundle_build_s": [round(x, 1) for x in build_s],
                "cpus": os.cpu_count(),
                "load": os.getloadavg(),
            }
        ),
        flush=True,
    )
    use_wrk = bool(args.client == "wrk" or (args.client == "auto" and shutil.which("wrk")))
    stores = ["memory", "redis"] if args.live_store == "redis" else ["memory"]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for store in stores:
        results[store] = _run_store(
            store, args, work, reg, use_wrk, swap=store == stores[-1], b2=b2
        )
    if len(stores) == 2:
        mem, red = results["memory"], results["redis"]
        for key in mem:
            a, b = mem[key], red[key]
            ratio: dict[str, Any] = {"bench": "ratio", "what": key, "redis_over_memory": {}}
            for m in (
                "p50_ms",
                "p99_ms",
                "rps",
                "server_cpu_ms_per_req",
                "event_to_visible_p50_ms",
                "event_to_visible_p99_ms",
                "post_p99_ms",
            ):
                if m in a and m in b and a[m]:
                    ratio["redis_over_memory"][m] = round(b[m] / a[m], 2)
            print(json.dumps(ratio), flush=True)


class _Redis:
    """A real redis-server on a free loopback port, AOF on, in ``work``."""

    def __init__(self, work: Path, fsync: str) -> None:
        self.port = _free_port()
        self.dir = work / "redis"
        self.dir.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                fsync,
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=(self.dir / "redis.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit((self.dir / "redis.log").read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _start_server(
    reg: str, work: Path, name: str, store: str
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RECSYS_API_KEY": API_KEY}
    log = (work / f"server-{name}.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "--log-level",
            "WARNING",
            "serve",
            "--registry",
            reg,
            "--port",
            str(port),
            "--event-log",
            str(work / f"events-{name}.jsonl"),
            "--live-store",
            store,
            "--reload-interval",
            "0.5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    t0 = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.perf_counter() - t0 > 120:
            raise SystemExit((work / f"server-{name}.log").read_text())
        time.sleep(0.2)
    print(
        json.dumps(
            {
                "bench": "startup",
                "server": name,
                "live_store": store.split(":")[0],
                "ready_s": round(time.perf_counter() - t0, 2),
            }
        ),
        flush=True,
    )
    return server, url


def _run_store(
    store: str,
    args: argparse.Namespace,
    work: Path,
    reg: str,
    use_wrk: bool,
    swap: bool,
    b2: Path,
) -> dict[str, dict[str, Any]]:
    """Load, event-to-visible and (``swap``) the bundle swap with one live-store backend."""
    import httpx

    from recsys.serving import registry

    redis_srv = _Redis(work, args.redis_fsync) if store == "redis" else None
    url_store = redis_srv.url if redis_srv else "memory"
    servers = [_start_server(reg, work, f"{store}-a", url_store)]
    if redis_srv:  # a second replica on the same store: events POSTed to A, read from B
        servers.append(_start_server(reg, work, f"{store}-b", url_store))
    server, url = servers[0]
    read_url = servers[-1][1]
    out: dict[str, dict[str, Any]] = {}
    try:

        def load(conc: int, duration: float) -> dict[str, Any]:
            if use_wrk:
                return _wrk(url, args.users, conc, duration, work)
            return _result(
                _client(url, args.users, "--concurrency", str(conc), "--duration", str(duration))
            )

        load(4, 1.0)  # warm-up
        for conc in [int(x) for x in args.concurrency.split(",")]:
            cpu0 = _cpu_seconds(server.pid)
            r = load(conc, args.duration)
            cpu = _cpu_seconds(server.pid) - cpu0
            r["server_cpu_ms_per_req"] = round(1e3 * cpu / max(r["requests"], 1), 3)
            out[f"load_c{conc}"] = r
            print(
                json.dumps(
                    {"bench": "load", "live_store": store, **r, "loadavg": os.getloadavg()[0]}
                ),
                flush=True,
            )
        cpu0 = _cpu_seconds(server.pid)
        r = _result(
            _client(
                url, args.users, "--mode", "event", "--n", str(args.events), "--read-url", read_url
            )
        )
        r["server_cpu_ms_per_get_post_get"] = round(
            1e3 * (_cpu_seconds(server.pid) - cpu0) / max(args.events, 1), 3
        )
        r["read_on_other_replica"] = read_url != url
        out["event_to_visible"] = r
        print(
            json.dumps(
                {
                    "bench": "event_to_visible",
                    "live_store": store,
                    **r,
                    "loadavg": os.getloadavg()[0],
                }
            ),
            flush=True,
        )
        if store == "memory":
            # the same durable write without the server, for comparison: the disk's own latency
            print(
                json.dumps(
                    {
                        "bench": "disk_write_fdatasync",
                        **_disk_fdatasync(work, args.events),
                        "loadavg": os.getloadavg()[0],
                    }
                ),
                flush=True,
            )
        if swap:
            # bundle swap during load: publish v2 early in a long run; no request may fail
            swap_dur = max(args.duration * 3, 15.0)
            with ThreadPoolExecutor(1) as pool:
                job = pool.submit(load, 32, swap_dur)
                time.sleep(swap_dur / 5)
                t_pub = time.perf_counter()
                registry.publish(reg, str(b2))
                while httpx.get(f"{url}/readyz", timeout=5).json()["model_version"] != "v2":
                    time.sleep(0.05)
                swapped_s = time.perf_counter() - t_pub
                r = job.result()
            print(
                json.dumps(
                    {
                        "bench": "swap_under_load",
                        "live_store": store,
                        "publish_to_serving_s": round(swapped_s, 2),
                        "swapped_before_load_ended": swapped_s < swap_dur * 0.8,
                        **r,
                    }
                ),
                flush=True,
            )
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=20)
        if redis_srv:
            redis_srv.stop()
    return out


if __name__ == "__main__":
    main()
