"""Deploy gate: publish a bundle, smoke-test the live endpoint, roll back on failure.

A backend knows how to make a bundle version live and how to undo it. The
``local`` backend moves the registry pointer (servers started with
``--registry`` hot-reload); the ``aks`` backend (issue 7: ``helm upgrade
--install``, wait for the rollout, ``helm rollback``) registers itself with
:func:`register_backend` under the same protocol, so the DAG does not change.
Plain Python, no Airflow import.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel

from recsys.artifacts import InputRef, manifest_sha256
from recsys.errors import GateFailed, InputError
from recsys.logs import get_logger
from recsys.orchestration.config import DeployConfig
from recsys.reports import write_report

log = get_logger(__name__)


class DeployBackend(Protocol):
    """Makes a bundle version live and can undo it."""

    name: str

    def current(self) -> str | None:
        """Version live now, ``None`` when nothing is deployed."""

    def publish(self, bundle_uri: str, version: str) -> None: ...

    def rollback(self, to_version: str | None) -> None:
        """Restore ``to_version`` (the version live before :meth:`publish`)."""


class LocalRegistryBackend:
    """The embedded default: the local registry pointer, watched by ``recsys serve``."""

    name = "local"

    def __init__(self, registry: str) -> None:
        self.registry = registry

    def current(self) -> str | None:
        from recsys.serving import registry

        entry = registry.current(self.registry)
        return entry.version if entry else None

    def publish(self, bundle_uri: str, version: str) -> None:
        from recsys.serving import registry

        registry.publish(self.registry, bundle_uri, version)

    def rollback(self, to_version: str | None) -> None:
        from recsys.serving import registry
        from recsys.storage import get_fs, join

        if to_version is None:
            # First deployment failed: nothing to go back to, so withdraw the pointer
            # rather than leave a bundle that failed its smoke test in production.
            fs, path = get_fs(join(self.registry, registry.POINTER))
            if fs.exists(path):
                fs.rm(path)
            return
        entry = registry.rollback(self.registry)
        if entry.version != to_version:
            raise InputError(
                f"{self.registry}: rollback reached {entry.version}, expected {to_version} "
                "(someone else published meanwhile)"
            )


BackendFactory = Callable[[str, DeployConfig], DeployBackend]
_BACKENDS: dict[str, BackendFactory] = {
    "local": lambda registry, cfg: LocalRegistryBackend(registry)
}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Extension point: issue 7 registers ``aks`` (Helm on AKS) here."""
    _BACKENDS[name] = factory


def get_backend(name: str, registry: str, cfg: DeployConfig) -> DeployBackend:
    if name == "aks" and "aks" not in _BACKENDS:
        try:  # issue 7 provides the module; until then, say so plainly
            import recsys.orchestration.aks  # noqa: F401
        except ImportError:
            raise InputError(
                "deploy backend 'aks' is not available yet (Helm rolling deploy, issue 7); "
                "use backend 'local'"
            ) from None
    if name not in _BACKENDS:
        raise InputError(f"unknown deploy backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name](registry, cfg)


def _get_json(url: str, api_key: str | None, timeout: float) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"X-API-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def smoke_test(
    serve_url: str,
    user_id: str,
    expected_version: str,
    timeout_s: float = 60.0,
    api_key: str | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Wait until the endpoint is ready and serves ``expected_version``, then check one answer.

    Returns the recommendation response; raises ``GateFailed`` naming the check.
    """
    base = serve_url.rstrip("/")
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            status, _ = _get_json(f"{base}/readyz", api_key, timeout=5)
            if status == 200:
                status, body = _get_json(f"{base}/v1/recommendations/{user_id}", api_key, timeout=5)
                if status == 200 and isinstance(body, dict):
                    served = str(body.get("model_version"))
                    if served == expected_version:
                        items = body.get("items") or body.get("recommendations") or []
                        if not items:
                            raise GateFailed(
                                "deploy",
                                [f"smoke: {base} ({served}) recommended nothing to {user_id}"],
                            )
                        return dict(body)
                    last = f"serves model_version {served}, waiting for {expected_version}"
                else:
                    last = f"GET /v1/recommendations/{user_id} -> HTTP {status}"
            else:
                last = f"GET /readyz -> HTTP {status}"
        except (OSError, ValueError) as exc:  # refused, reset, timeout, bad JSON
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise GateFailed(
                "deploy",
                [f"smoke: {base} not serving {expected_version} after {timeout_s}s ({last})"],
            )
        time.sleep(poll_s)


class DeployResult(BaseModel):
    backend: str
    version: str
    bundle_uri: str
    previous_version: str | None
    smoke: str
    """``passed``, ``skipped`` (no endpoint configured) or ``failed``."""
    rolled_back: bool = False


def deploy_bundle(
    backend: DeployBackend,
    bundle_uri: str,
    version: str,
    smoke: Callable[[str], object] | None,
) -> DeployResult:
    """Publish ``version``; if the smoke check fails, restore the previous version and raise.

    ``smoke(version)`` raises when the live endpoint does not serve the new
    version correctly; ``None`` means no live endpoint to check.
    """
    previous = backend.current()
    backend.publish(bundle_uri, version)
    log.info("deploy[%s]: published %s (previous %s)", backend.name, version, previous)
    if smoke is None:
        log.warning("deploy[%s]: no live endpoint configured: smoke test skipped", backend.name)
        return DeployResult(
            backend=backend.name,
            version=version,
            bundle_uri=bundle_uri,
            previous_version=previous,
            smoke="skipped",
        )
    try:
        smoke(version)
    except Exception as exc:
        log.error(
            "deploy[%s]: smoke test failed (%s): rolling back to %s", backend.name, exc, previous
        )
        backend.rollback(previous)
        failures = exc.failures if isinstance(exc, GateFailed) else [f"smoke: {exc}"]
        raise GateFailed("deploy", [*failures, f"rolled back to {previous or 'nothing'}"]) from exc
    log.info("deploy[%s]: %s is live and answered the smoke query", backend.name, version)
    return DeployResult(
        backend=backend.name,
        version=version,
        bundle_uri=bundle_uri,
        previous_version=previous,
        smoke="passed",
    )


DEPLOY_KIND = "deployment"
DEPLOYMENT_JSON = "deployment.json"


def write_deploy_record(
    uri: str,
    day: dt.date,
    record: dict[str, Any],
    model_report: str,
    gate: dict[str, Any] | None,
) -> str:
    """Publish the deployment record at ``uri``: the lineage's last link (the bundle, the
    versions, the smoke outcome, a rollback, and whether the model gate was overridden)."""
    body = {
        **record,
        "day": day.isoformat(),
        "model_gate_forced": bool(gate and gate.get("forced")),
        "model_report": model_report,
    }
    bundle_uri = str(record["bundle_uri"])
    write_report(
        uri,
        DEPLOY_KIND,
        {DEPLOYMENT_JSON: body},
        inputs={"bundle": InputRef(uri=bundle_uri, sha256=manifest_sha256(bundle_uri))},
        extra={"smoke": record["smoke"], "rolled_back": bool(record.get("rolled_back"))},
    )
    log.info("deployment record: %s", uri)
    return uri
