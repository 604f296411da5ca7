"""Small HTTP helpers shared by the route modules: timing, bounds, the API key, JSON."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from fastapi import Header, HTTPException
from fastapi.responses import Response

from recsys.errors import InputError
from recsys.serving.metrics import Metrics

P = ParamSpec("P")
R = TypeVar("R")


def timed(
    metrics: Metrics, endpoint: str
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Latency histogram and outcome counter of ``endpoint``; InputError becomes a 400."""
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


def respond(
    obj: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=json.dumps(obj, separators=(",", ":")),
        media_type="application/json",
        status_code=status_code,
        headers=headers,
    )


def check_id(value: str, name: str, max_len: int) -> None:
    if not value or len(value) > max_len:
        raise HTTPException(status_code=422, detail=f"{name}: length must be 1..{max_len}")


def api_key_dependency(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """A route dependency that checks ``X-API-Key``. It runs before the body is validated:
    without the key a malformed body gets 401, not a 422 that describes the API to anyone."""

    async def write_access(x_api_key: str | None = Header(default=None)) -> None:
        if not api_key:
            raise HTTPException(
                status_code=403,
                detail="server has no API key configured "
                "(RECSYS_API_KEY); writes and admin are disabled",
            )
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

    return write_access


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


def parse_list(raw: str | None, name: str, max_len: int) -> list[str]:
    if not raw:
        return []
    out = [p.strip() for p in raw.split(",") if p.strip()]
    if len(out) > max_len:
        raise InputError(f"{name}: at most {max_len} entries, got {len(out)}")
    return out


def qparam(name: str, desc: str, kind: str = "string", where: str = "query") -> dict[str, Any]:
    """One OpenAPI parameter, for routes that read their parameters by hand."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": desc,
        "schema": {"type": kind},
    }
