"""AKS deploy backend: roll a new bundle out with Helm, prove it serves, or roll back.

The plan, run by :func:`deploy_to_aks`:

1. remember the release's deployed revision (none on a first install);
2. ``helm upgrade --install`` the chart with ``model.version`` and
   ``model.bundleUri`` set: the pod template's model annotation changes, so the
   Deployment rolls one pod at a time (maxSurge 1, maxUnavailable 0);
3. wait for the rollout: every replica updated and available, each having
   passed ``/readyz`` (bundle loaded and warmed);
4. smoke-test through the Service: ``/readyz`` and one recommendation, whose
   model version must be the one just deployed;
5. on any failure in 2-4: ``helm rollback`` to the remembered revision (or
   uninstall a first install that never served), wait for that rollout, and
   fail the deploy gate naming the step that broke.

Cluster access goes through two small protocols, :class:`HelmClient` and
:class:`KubeClient`, so the plan is tested against fakes (no cluster can run
in CI). The real implementations use the Helm engine embedded in
``helm-python-sdk`` (no helm binary) and the official ``kubernetes`` client,
built from the Airflow Kubernetes connection that holds the cluster
credentials (:mod:`recsys.orchestration.aks_clients`). :class:`AksBackend` is the deploy
gate's backend ``aks`` (:mod:`recsys.orchestration.deploy`); the smoke test is the
protocol every backend uses (:mod:`recsys.orchestration.smoke`), reached through the
Service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recsys.errors import GateFailed, InputError
from recsys.orchestration import smoke
from recsys.orchestration.smoke import HttpReply

log = logging.getLogger(__name__)

CHART_ENV = "RECSYS_HELM_CHART"
VALUES_ENV = "RECSYS_HELM_VALUES"
"""Values files for the release, separated by ``os.pathsep``."""
# In a source checkout the chart sits next to the package; images set RECSYS_HELM_CHART.
REPO_CHART = Path(__file__).resolve().parents[2] / "helm" / "recsys-serving"


def default_chart() -> str:
    return os.environ.get(CHART_ENV) or str(REPO_CHART)


def default_values_files() -> tuple[str, ...]:
    return tuple(p for p in os.environ.get(VALUES_ENV, "").split(os.pathsep) if p)


class DeployStepError(Exception):
    """One step of the plan failed; ``step`` names it for the gate's message."""

    def __init__(self, step: str, message: str) -> None:
        self.step = step
        self.detail = message
        super().__init__(f"{step}: {message}")


@dataclass(frozen=True)
class ReleaseRevision:
    revision: int
    status: str
    """Helm's status: deployed, superseded, failed, pending-upgrade, ..."""
    model_version: str | None


class HelmClient(Protocol):
    """The Helm release operations the plan needs."""

    def history(self, release: str, namespace: str) -> list[ReleaseRevision]:
        """The release's revisions, oldest first; empty when it does not exist."""
        ...

    def upgrade_install(
        self,
        release: str,
        chart: str,
        namespace: str,
        values: Mapping[str, Any],
        timeout_s: int,
    ) -> int:
        """Install or upgrade; returns the new revision. Raises on failure."""
        ...

    def rollback(self, release: str, namespace: str, revision: int, timeout_s: int) -> None: ...

    def uninstall(self, release: str, namespace: str, timeout_s: int) -> None: ...


class KubeClient(Protocol):
    """The Kubernetes reads the plan needs."""

    def wait_rollout(self, namespace: str, deployment: str, timeout_s: float) -> None:
        """Return once every replica runs the newest template and is available; raise otherwise."""
        ...

    def get_via_service(
        self, namespace: str, service: str, port: str, path: str, timeout_s: float
    ) -> HttpReply:
        """GET ``path`` (with its query string) through the Service."""
        ...


@dataclass(frozen=True)
class AksTarget:
    """Where the inference service lives and how a rollout is judged."""

    release: str = "recsys-serving"
    namespace: str = "recsys"
    chart: str = field(default_factory=default_chart)
    """A chart folder, a packaged .tgz, or an ``oci://`` reference in ACR."""
    values_files: tuple[str, ...] = field(default_factory=default_values_files)
    """Values files applied in order (e.g. helm/values-production.yaml)."""
    extra_values: Mapping[str, Any] = field(default_factory=dict)
    rollout_timeout_s: int = 900
    smoke_user: str = "smoke-test-user"
    smoke_k: int = 10
    model_version_field: str = "model_version"
    service_port: str = "http"

    @property
    def fullname(self) -> str:
        """Deployment and Service name, as the chart's fullname helper builds it."""
        override = self.extra_values.get("fullnameOverride")
        if override:
            return str(override)[:63].rstrip("-")
        chart_name = "recsys-serving"
        if chart_name in self.release:
            return self.release[:63].rstrip("-")
        return f"{self.release}-{chart_name}"[:63].rstrip("-")


@dataclass
class AksDeployResult:
    release: str
    version: str
    revision: int | None = None
    previous_revision: int | None = None
    rolled_back: bool = False
    steps: list[str] = field(default_factory=list)
    """What ran, in order, e.g. ``upgrade: revision 7``; the task log shows it."""


def deployed(history: list[ReleaseRevision]) -> ReleaseRevision | None:
    live = [r for r in history if r.status == "deployed"]
    return live[-1] if live else None


def release_values(target: AksTarget, version: str, bundle_uri: str) -> dict[str, Any]:
    """Values of one rollout: the values files, then the extras, then the bundle."""
    import yaml

    values: dict[str, Any] = {}
    for path in target.values_files:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise InputError(f"{path}: a values file must hold a mapping")
        values = _merge(values, loaded)
    values = _merge(values, dict(target.extra_values))
    return _merge(values, {"model": {"version": version, "bundleUri": bundle_uri}})


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def smoke_test(kube: KubeClient, target: AksTarget, version: str) -> str:
    """The smoke protocol through the Service; returns a summary."""

    def get(path: str) -> HttpReply:
        return kube.get_via_service(
            target.namespace, target.fullname, target.service_port, path, 10.0
        )

    try:
        body = smoke.check(
            get, target.smoke_user, version, target.smoke_k, target.model_version_field or None
        )
    except smoke.SmokeFailed as exc:
        raise DeployStepError("smoke", str(exc)) from None
    return f"{len(body['items'])} items from model {version}"


def deploy_to_aks(
    version: str,
    bundle_uri: str,
    *,
    helm: HelmClient,
    kube: KubeClient,
    target: AksTarget | None = None,
) -> AksDeployResult:
    """Roll ``bundle_uri`` out as ``version``.

    On any failure: roll back, then raise :class:`GateFailed` naming the step.
    """
    target = target or AksTarget()
    if not version or not bundle_uri:
        raise InputError("deploy needs a bundle version and a bundle URI")
    values = release_values(target, version, bundle_uri)
    result = AksDeployResult(release=target.release, version=version)

    live = deployed(helm.history(target.release, target.namespace))
    previous = live.revision if live else None
    result.previous_revision = previous
    result.steps.append(
        f"previous: revision {previous} ({live.model_version})" if live else "previous: none"
    )
    step = "upgrade"
    try:
        result.revision = helm.upgrade_install(
            target.release, target.chart, target.namespace, values, target.rollout_timeout_s
        )
        result.steps.append(f"upgrade: revision {result.revision}")
        step = "rollout"
        kube.wait_rollout(target.namespace, target.fullname, target.rollout_timeout_s)
        result.steps.append("rollout: all replicas ready")
        step = "smoke"
        result.steps.append(f"smoke: {smoke_test(kube, target, version)}")
    except Exception as exc:
        failed, message = (
            (exc.step, exc.detail) if isinstance(exc, DeployStepError) else (step, str(exc))
        )
        result.steps.append(f"{failed}: FAILED {message}")
        log.error("deploy of %s failed at %s: %s; rolling back", version, failed, message)
        failures = [f"{failed}: {message}"]
        failures += _roll_back(helm, kube, target, previous, result)
        log.info("deploy steps: %s", "; ".join(result.steps))
        raise GateFailed("deploy", failures) from exc
    log.info("deploy steps: %s", "; ".join(result.steps))
    return result


def _roll_back(
    helm: HelmClient,
    kube: KubeClient,
    target: AksTarget,
    previous: int | None,
    result: AksDeployResult,
) -> list[str]:
    """Restore what served before; returns extra failure lines if that went wrong too."""
    try:
        if previous is None:
            # Nothing served before: remove the broken first install rather than leave it half up.
            helm.uninstall(target.release, target.namespace, target.rollout_timeout_s)
            result.steps.append("rollback: uninstalled the failed first install")
        else:
            helm.rollback(target.release, target.namespace, previous, target.rollout_timeout_s)
            kube.wait_rollout(target.namespace, target.fullname, target.rollout_timeout_s)
            result.steps.append(f"rollback: back on revision {previous}")
        result.rolled_back = True
        return []
    except Exception as exc:
        result.steps.append(f"rollback: FAILED {exc}")
        log.critical("rollback of %s failed: %s", target.release, exc)
        return [f"rollback: {exc} (the release needs a person now)"]


# --- the deploy gate's backend ---------------------------------------------


class AksBackend:
    """The deploy gate's backend ``aks`` (:mod:`recsys.orchestration.deploy`).

    ``publish`` runs the whole plan (its own rollout wait, in-cluster smoke test
    and rollback); ``rollback`` serves the deploy gate's second line of defence,
    when its smoke test against ``serve_url`` fails after a publish that passed.
    """

    name = "aks"

    def __init__(
        self,
        target: AksTarget,
        clients: Callable[[], tuple[HelmClient, KubeClient]],
    ) -> None:
        self.target = target
        self._factory = clients
        self._clients: tuple[HelmClient, KubeClient] | None = None
        self.last_result: AksDeployResult | None = None

    def _get(self) -> tuple[HelmClient, KubeClient]:
        # Connect on first use, never when the backend is built (e.g. at DAG parse time).
        if self._clients is None:
            self._clients = self._factory()
        return self._clients

    def current(self) -> str | None:
        helm, _ = self._get()
        live = deployed(helm.history(self.target.release, self.target.namespace))
        return live.model_version if live else None

    def publish(self, bundle_uri: str, version: str) -> None:
        helm, kube = self._get()
        self.last_result = deploy_to_aks(
            version, bundle_uri, helm=helm, kube=kube, target=self.target
        )

    def rollback(self, to_version: str | None) -> None:
        helm, kube = self._get()
        t = self.target
        if to_version is None:
            helm.uninstall(t.release, t.namespace, t.rollout_timeout_s)
            return
        history = helm.history(t.release, t.namespace)
        live = deployed(history)
        candidates = [
            r
            for r in history
            if r.model_version == to_version and (live is None or r.revision != live.revision)
        ]
        if not candidates:
            raise InputError(f"{t.release}: no Helm revision serves model {to_version}")
        helm.rollback(t.release, t.namespace, candidates[-1].revision, t.rollout_timeout_s)
        kube.wait_rollout(t.namespace, t.fullname, t.rollout_timeout_s)
