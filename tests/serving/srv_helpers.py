"""Helpers of the serving tests: real bundles and a real server in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from recsys.artifacts import InputRef
from recsys.bundle import BundleMeta, write_bundle
from recsys.export.synthetic import synthetic_tables
from tests.conftest import free_port

API_KEY = "test-key-123"


def make_bundle(
    uri: str,
    version: str,
    seed: int,
    data_cutoff: str | None = None,
    inputs: dict[str, InputRef] | None = None,
    **kw: object,
) -> str:
    t = synthetic_tables(seed=seed, **kw)  # type: ignore[arg-type]
    meta = BundleMeta(
        version=version,
        num_layers=t.num_layers,
        embedding_dim=t.item_final.shape[1],
        num_users=len(t.user_ids),
        num_items=len(t.item_ids),
        segment_feature="country",
        data_cutoff=data_cutoff,
    )
    write_bundle(t, uri, meta, inputs=inputs)
    return uri


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    event_log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0)

    def logs(self) -> str:
        return self.log_path.read_text()


def start_server(
    tmp: Path,
    *args: str,
    api_key: str | None = API_KEY,
    port: int | None = None,
    env_extra: dict[str, str] | None = None,
) -> Server:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RECSYS_API_KEY", "RECSYS_LIVE_STORE")}
    if api_key:
        env["RECSYS_API_KEY"] = api_key
    env.update(env_extra or {})
    log_path = tmp / f"server-{port}.log"
    event_log = tmp / f"events-{port}.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "serve",
            *args,
            "--port",
            str(port),
            "--event-log",
            str(event_log),
            "--reload-interval",
            "0.2",
        ],
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return Server(url, proc, log_path, event_log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {log_path.read_text()}")


def stop_server(s: Server) -> None:
    s.proc.terminate()
    try:
        s.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        s.proc.kill()
