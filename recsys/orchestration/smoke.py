"""The deploy smoke test: one protocol, whichever backend made the bundle live.

An endpoint serves a version when ``GET /readyz`` answers 200 and one recommendation for
the smoke user answers 200 with JSON that names that model version and holds at least one
item. Backends differ only in how they reach the endpoint: a URL from this machine
(:func:`wait_until_served`, the local registry) or the Kubernetes API server's proxy to
the Service (:mod:`recsys.orchestration.aks`); each passes a :data:`Get`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from recsys.errors import GateFailed

DEFAULT_K = 10


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: str


Get = Callable[[str], HttpReply]
"""``GET path`` (with its query string) against the endpoint."""


class SmokeFailed(Exception):
    """The endpoint does not serve the version (yet); ``settled`` when waiting cannot help
    (it serves the version and recommends nothing)."""

    def __init__(self, message: str, settled: bool = False) -> None:
        super().__init__(message)
        self.settled = settled


def check(
    get: Get,
    user: str,
    version: str,
    k: int = DEFAULT_K,
    version_field: str | None = "model_version",
) -> dict[str, Any]:
    """One pass of the protocol; returns the recommendation answer, raises :class:`SmokeFailed`.

    ``version_field`` names the answer's model version (``None``: not checked)."""
    ready = get("/readyz")
    if ready.status != 200:
        raise SmokeFailed(f"/readyz answered {ready.status}: {ready.body[:200]}")
    path = f"/v1/recommendations/{quote(user, safe='')}?k={k}"
    reply = get(path)
    if reply.status != 200:
        raise SmokeFailed(f"{path} answered {reply.status}: {reply.body[:200]}")
    try:
        body = json.loads(reply.body)
    except ValueError:
        raise SmokeFailed(f"{path} did not answer JSON: {reply.body[:200]}") from None
    if not isinstance(body, dict):
        raise SmokeFailed(f"{path} did not answer a JSON object: {reply.body[:200]}")
    served = body.get(version_field) if version_field else version
    if served != version:
        # an old bundle still answers: a hot reload or a rollout not finished
        raise SmokeFailed(f"the endpoint answers with model {served!r}, not {version!r}")
    if not body.get("items"):
        raise SmokeFailed(
            f"{path} returned no recommendations (model {served} recommended nothing to {user})",
            settled=True,
        )
    return body


def http_get(base_url: str, api_key: str | None = None, timeout_s: float = 5.0) -> Get:
    """A :data:`Get` over plain HTTP from this machine."""
    base = base_url.rstrip("/")
    headers = {"X-API-Key": api_key} if api_key else {}

    def get(path: str) -> HttpReply:
        req = urllib.request.Request(f"{base}{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return HttpReply(int(resp.status), resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return HttpReply(exc.code, exc.read().decode("utf-8", "replace"))

    return get


def wait_until_served(
    serve_url: str,
    user_id: str,
    expected_version: str,
    timeout_s: float = 60.0,
    api_key: str | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Repeat :func:`check` against ``serve_url`` until it passes (servers hot-reload a new
    bundle within seconds); returns the answer, raises ``GateFailed`` naming the check."""
    base = serve_url.rstrip("/")
    get = http_get(base, api_key)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check(get, user_id, expected_version)
        except SmokeFailed as exc:
            if exc.settled:
                raise GateFailed("deploy", [f"smoke: {base}: {exc}"]) from None
            last = str(exc)
        except OSError as exc:  # refused, reset, timeout
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise GateFailed(
                "deploy",
                [f"smoke: {base} not serving {expected_version} after {timeout_s}s ({last})"],
            )
        time.sleep(poll_s)
