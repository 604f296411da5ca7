"""Deploy gate: publish a bundle, smoke-test the live endpoint, roll back on failure.

A backend knows how to make a bundle version live and how to undo it; :data:`BACKENDS`
names them. ``local`` moves the registry pointer (servers started with ``--registry``
hot-reload); ``aks`` runs ``helm upgrade --install``, waits for the rollout and smoke-tests
through the Service (:mod:`recsys.orchestration.aks`). Both smoke-test with
:mod:`recsys.orchestration.smoke`. Plain Python: Airflow is imported only by the AKS
backend's real clients, when they connect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel

from recsys.artifacts import InputRef, manifest_sha256
from recsys.errors import GateFailed, InputError
from recsys.logs import get_logger
from recsys.orchestration import aks_clients
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
"""``(registry URI, deploy config) -> backend``; building one connects to nothing."""

BACKENDS: dict[str, BackendFactory] = {
    "local": lambda registry, cfg: LocalRegistryBackend(registry),
    "aks": lambda registry, cfg: aks_clients.backend_from_config(cfg),
}


def get_backend(name: str, registry: str, cfg: DeployConfig) -> DeployBackend:
    if name not in BACKENDS:
        raise InputError(f"unknown deploy backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name](registry, cfg)


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
        "model_gate_decision": (gate or {}).get("decision"),
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
