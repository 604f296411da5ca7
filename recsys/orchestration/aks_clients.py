"""The AKS deploy backend's real cluster clients, and the backend built from them.

:class:`SdkHelmClient` (the Helm engine embedded in ``helm-python-sdk``, no helm binary)
and :class:`KubernetesApiClient` (the official ``kubernetes`` client) implement the
:class:`~recsys.orchestration.aks.HelmClient` and
:class:`~recsys.orchestration.aks.KubeClient` protocols that the plan in
:mod:`recsys.orchestration.aks` is written against (and tested with fakes);
:func:`backend_from_config` wires them, from the Airflow Kubernetes connection, into the
deploy gate's backend ``aks``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recsys.orchestration.aks import (
    AksBackend,
    AksTarget,
    DeployStepError,
    HelmClient,
    KubeClient,
    ReleaseRevision,
)
from recsys.orchestration.config import DeployConfig
from recsys.orchestration.smoke import HttpReply

log = logging.getLogger(__name__)


def backend_from_config(cfg: DeployConfig) -> AksBackend:
    """The deploy gate's backend ``aks``; cluster settings come from the environment.

    ``RECSYS_AKS_CONN_ID`` (Airflow Kubernetes connection, default ``kubernetes_default``),
    ``RECSYS_AKS_RELEASE``, ``RECSYS_AKS_NAMESPACE``, ``RECSYS_HELM_CHART``,
    ``RECSYS_HELM_VALUES``; the smoke user is the deploy config's, when set.
    """
    env = os.environ
    target = AksTarget(
        release=env.get("RECSYS_AKS_RELEASE", "recsys-serving"),
        namespace=env.get("RECSYS_AKS_NAMESPACE", "recsys"),
        smoke_user=cfg.smoke_user or "smoke-test-user",
    )
    conn_id = env.get("RECSYS_AKS_CONN_ID", "kubernetes_default")
    return AksBackend(target, lambda: clients_from_airflow_connection(conn_id))


class SdkHelmClient:
    """:class:`HelmClient` on the Helm engine embedded in ``helm-python-sdk``."""

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None) -> None:
        import helm_python

        self._helm = helm_python
        # No kubeconfig: KUBECONFIG, ~/.kube/config, then the pod's in-cluster service account.
        self._kubeconfig = kubeconfig
        self._context = context

    def _config(self, namespace: str) -> Any:
        return self._helm.Config(
            kubeconfig_content=self._kubeconfig, kube_context=self._context, namespace=namespace
        )

    def history(self, release: str, namespace: str) -> list[ReleaseRevision]:
        with self._config(namespace) as cfg:
            try:
                revisions = cfg.history(release, max_revisions=20)
            except self._helm.HelmNotFoundError:
                return []
            out = []
            for rel in revisions:
                number = int(rel["version"])
                values = cfg.get_values(release, revision=number) or {}
                model = values.get("model") if isinstance(values, dict) else None
                version = model.get("version") if isinstance(model, dict) else None
                out.append(ReleaseRevision(number, _status(rel), version))
        return sorted(out, key=lambda r: r.revision)

    def upgrade_install(
        self,
        release: str,
        chart: str,
        namespace: str,
        values: Mapping[str, Any],
        timeout_s: int,
    ) -> int:
        with self._config(namespace) as cfg:
            try:
                statuses = [_status(r) for r in cfg.history(release, max_revisions=20)]
            except self._helm.HelmNotFoundError:
                statuses = []
            exists = "deployed" in statuses or "superseded" in statuses
            if statuses and not exists:
                # Only failed attempts (e.g. a killed first install): Helm refuses to upgrade
                # a release that never deployed, and nothing serves from it anyway.
                cfg.uninstall(release, timeout=timeout_s, ignore_not_found=True)
            common = {"namespace": namespace, "timeout": timeout_s, "description": "recsys deploy"}
            if exists:
                rel = cfg.upgrade(chart, release, dict(values), max_history=10, **common)
            else:
                # The namespace exists already (the guide creates it): creating it would need
                # cluster-wide rights the deploying service account should not hold.
                rel = cfg.install(chart, release, dict(values), **common)
        return int(rel["version"])

    def rollback(self, release: str, namespace: str, revision: int, timeout_s: int) -> None:
        with self._config(namespace) as cfg:
            cfg.rollback(release, version=revision, timeout=timeout_s)

    def uninstall(self, release: str, namespace: str, timeout_s: int) -> None:
        with self._config(namespace) as cfg:
            cfg.uninstall(release, timeout=timeout_s, ignore_not_found=True)


def _status(release: Mapping[str, Any]) -> str:
    info = release.get("info")
    status = info.get("status") if isinstance(info, Mapping) else release.get("status")
    return str(status or "").lower()


class KubernetesApiClient:
    """:class:`KubeClient` on the official ``kubernetes`` client.

    The smoke query goes through the API server's service proxy, so it reaches
    the Service from wherever the credentials work, inside the cluster or not.
    """

    def __init__(
        self, api_client: Any, *, sleep: Callable[[float], None] = time.sleep, poll_s: float = 5.0
    ) -> None:
        self._api_client = api_client
        self._sleep = sleep
        self._poll_s = poll_s

    def wait_rollout(self, namespace: str, deployment: str, timeout_s: float) -> None:
        from kubernetes import client

        apps = client.AppsV1Api(self._api_client)
        deadline = time.monotonic() + timeout_s
        while True:
            dep = apps.read_namespaced_deployment_status(deployment, namespace)
            done, reason = rollout_state(dep.to_dict())
            if done:
                return
            if reason:
                raise DeployStepError("rollout", reason)
            if time.monotonic() > deadline:
                raise DeployStepError("rollout", f"not complete after {timeout_s:.0f}s")
            self._sleep(self._poll_s)

    def get_via_service(
        self, namespace: str, service: str, port: str, path: str, timeout_s: float
    ) -> HttpReply:
        from kubernetes.client.exceptions import ApiException

        resource, _, query = path.lstrip("/").partition("?")
        params = [tuple(kv.split("=", 1)) for kv in query.split("&") if "=" in kv]
        try:
            resp = self._api_client.call_api(
                f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{resource}",
                "GET",
                query_params=params,
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout_s,
            )
        except ApiException as exc:
            return HttpReply(int(exc.status or 0), str(exc.body or exc.reason))
        raw = resp[0] if isinstance(resp, tuple) else resp
        return HttpReply(int(raw.status), raw.data.decode("utf-8", "replace"))


def rollout_state(dep: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(complete, failure reason) of a Deployment, as ``kubectl rollout status`` judges it."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {cond.get('message')}"
    if (status.get("observed_generation") or 0) < (meta.get("generation") or 0):
        return False, None
    want = spec.get("replicas") or 0
    updated = status.get("updated_replicas") or 0
    total = status.get("replicas") or 0
    available = status.get("available_replicas") or 0
    done = updated >= want and total == updated and available >= updated
    return done, None


def clients_from_airflow_connection(
    conn_id: str = "kubernetes_default",
) -> tuple[HelmClient, KubeClient]:
    """Both clients from the Airflow Kubernetes connection (in_cluster, kube_config or its path)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    hook = KubernetesHook(conn_id=conn_id)
    # _get_field also reads the legacy extra__kubernetes__* names the UI may have stored.
    get_field: Callable[[str], Any] = hook._get_field
    kubeconfig = get_field("kube_config")
    path = get_field("kube_config_path")
    if not kubeconfig and path:
        kubeconfig = Path(str(path)).read_text(encoding="utf-8")
    if isinstance(kubeconfig, dict):
        kubeconfig = json.dumps(kubeconfig)
    # in_cluster (Airflow on the same AKS): no kubeconfig, Helm uses the pod's service account.
    helm = SdkHelmClient(kubeconfig=kubeconfig, context=get_field("cluster_context"))
    return helm, KubernetesApiClient(hook.get_conn())
