"""The AKS deploy plan (upgrade, wait, smoke, rollback) against a fake Helm/Kubernetes layer.

No cluster can run here. FakeHelm keeps release history like Helm does and
renders the real chart with the embedded Helm engine on every upgrade, so a
value the chart refuses fails here as it would on AKS. FakeKube plays the
Deployment controller and the Service: a rollout completes unless the bundle
is marked broken, and the Service answers with the model version of the
Deployment that is live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from recsys.errors import GateFailed, InputError
from recsys.orchestration import aks, aks_clients
from recsys.orchestration.aks import (
    AksBackend,
    AksTarget,
    DeployStepError,
    HttpReply,
    ReleaseRevision,
    deploy_to_aks,
)

helm = pytest.importorskip("helm_python")

ROOT = Path(__file__).resolve().parents[2]
PROD = str(ROOT / "helm" / "values-production.yaml")
BUNDLES = "abfs://lake@recsysdata.dfs.core.windows.net/bundles"


@dataclass
class FakeRevision:
    number: int
    status: str
    deployment: dict[str, Any]


@dataclass
class FakeCluster:
    """State shared by FakeHelm and FakeKube: releases and what the Service serves."""

    revisions: dict[str, list[FakeRevision]] = field(default_factory=dict)
    broken_rollout: set[str] = field(default_factory=set)
    """Bundle versions whose pods never pass /readyz."""
    smoke_replies: dict[str, HttpReply] = field(default_factory=dict)
    """Bundle version -> what /v1/recommendations answers instead of a good reply."""
    fail_rollback: bool = False
    calls: list[str] = field(default_factory=list)

    def live(self, release: str) -> FakeRevision | None:
        deployed = [r for r in self.revisions.get(release, []) if r.status == "deployed"]
        return deployed[-1] if deployed else None


def model_version_of(deployment: dict[str, Any]) -> str:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["recsys.io/model-version"])


class FakeHelm:
    """HelmClient double: real chart rendering, in-memory release history."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def history(self, release: str, namespace: str) -> list[ReleaseRevision]:
        return [
            ReleaseRevision(r.number, r.status, model_version_of(r.deployment))
            for r in self.cluster.revisions.get(release, [])
        ]

    def upgrade_install(
        self, release: str, chart: str, namespace: str, values: Mapping[str, Any], timeout_s: int
    ) -> int:
        self.cluster.calls.append(f"upgrade {values['model']['version']}")
        with helm.Chart.load(chart) as loaded:
            rendered = loaded.render(dict(values), name=release, namespace=namespace)
        docs = [
            d
            for path, text in rendered.items()
            if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text)
            if isinstance(d, dict)
        ]
        (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
        history = self.cluster.revisions.setdefault(release, [])
        for rev in history:
            if rev.status == "deployed":
                rev.status = "superseded"
        number = len(history) + 1
        history.append(FakeRevision(number, "deployed", deployment))
        return number

    def rollback(self, release: str, namespace: str, revision: int, timeout_s: int) -> None:
        self.cluster.calls.append(f"rollback {revision}")
        if self.cluster.fail_rollback:
            raise RuntimeError("the API server is unreachable")
        history = self.cluster.revisions[release]
        target = next(r for r in history if r.number == revision)
        for rev in history:
            if rev.status == "deployed":
                rev.status = "superseded"
        history.append(FakeRevision(len(history) + 1, "deployed", target.deployment))

    def uninstall(self, release: str, namespace: str, timeout_s: int) -> None:
        self.cluster.calls.append("uninstall")
        self.cluster.revisions.pop(release, None)


class FakeKube:
    """KubeClient double: a Deployment controller and a Service in one."""

    def __init__(self, cluster: FakeCluster, release: str = "recsys-serving") -> None:
        self.cluster = cluster
        self.release = release

    def wait_rollout(self, namespace: str, deployment: str, timeout_s: float) -> None:
        live = self.cluster.live(self.release)
        assert live is not None, "waited for a rollout of a release that does not exist"
        assert live.deployment["metadata"]["name"] == deployment
        version = model_version_of(live.deployment)
        self.cluster.calls.append(f"wait {version}")
        if version in self.cluster.broken_rollout:
            raise DeployStepError("rollout", "progress deadline exceeded: pods never ready")

    def get_via_service(
        self, namespace: str, service: str, port: str, path: str, timeout_s: float
    ) -> HttpReply:
        live = self.cluster.live(self.release)
        assert live is not None and live.deployment["metadata"]["name"] == service
        version = model_version_of(live.deployment)
        self.cluster.calls.append(f"GET {path}")
        if path == "/readyz":
            return HttpReply(200, '{"status": "ready"}')
        if version in self.cluster.smoke_replies:
            return self.cluster.smoke_replies[version]
        body = {"model_version": version, "items": [{"item_id": "i1", "score": 1.0}]}
        return HttpReply(200, json.dumps(body))


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def run(cluster: FakeCluster, version: str, **target: Any) -> aks.AksDeployResult:
    return deploy_to_aks(
        version,
        f"{BUNDLES}/{version}",
        helm=FakeHelm(cluster),
        kube=FakeKube(cluster),
        target=AksTarget(values_files=(PROD,), **target),
    )


def served(cluster: FakeCluster) -> str:
    live = cluster.live("recsys-serving")
    assert live is not None
    return model_version_of(live.deployment)


def test_first_install_then_upgrade_rolls_the_new_bundle_out(cluster: FakeCluster) -> None:
    first = run(cluster, "v1")
    assert (first.previous_revision, first.revision, first.rolled_back) == (None, 1, False)
    assert [s.split(":")[0] for s in first.steps] == ["previous", "upgrade", "rollout", "smoke"]

    second = run(cluster, "v2")
    assert (second.previous_revision, second.revision) == (1, 2)
    assert served(cluster) == "v2"
    assert cluster.calls[-4:] == [
        "upgrade v2",
        "wait v2",
        "GET /readyz",
        "GET /v1/recommendations/smoke-test-user?k=10",
    ]
    live = cluster.live("recsys-serving")
    assert live is not None
    args = live.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--bundle") + 1] == f"{BUNDLES}/v2"


def test_rollout_that_never_gets_ready_is_rolled_back(cluster: FakeCluster) -> None:
    run(cluster, "v1")
    cluster.broken_rollout.add("v2")
    with pytest.raises(GateFailed) as info:
        run(cluster, "v2")
    assert info.value.gate == "deploy"
    assert info.value.failures[0].startswith("rollout: progress deadline exceeded")
    assert "GET /readyz" not in cluster.calls[cluster.calls.index("upgrade v2") :]
    assert cluster.calls[-2:] == ["rollback 1", "wait v1"]
    assert served(cluster) == "v1"
    assert [r.status for r in cluster.revisions["recsys-serving"]] == [
        "superseded",
        "superseded",
        "deployed",
    ]


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (HttpReply(500, "internal error"), "answered 500"),
        (HttpReply(200, "<html>oops</html>"), "did not answer JSON"),
        (HttpReply(200, json.dumps({"model_version": "v2", "items": []})), "no recommendations"),
        (
            HttpReply(200, json.dumps({"model_version": "v1", "items": [{"item_id": "x"}]})),
            "not 'v2'",
        ),
    ],
)
def test_failed_smoke_test_rolls_back(cluster: FakeCluster, reply: HttpReply, why: str) -> None:
    run(cluster, "v1")
    cluster.smoke_replies["v2"] = reply
    with pytest.raises(GateFailed) as info:
        run(cluster, "v2")
    assert info.value.failures[0].startswith("smoke:")
    assert why in info.value.failures[0]
    assert "rollback 1" in cluster.calls
    assert served(cluster) == "v1"


def test_upgrade_refused_by_the_chart_keeps_the_old_release(cluster: FakeCluster) -> None:
    run(cluster, "v1")
    with pytest.raises(GateFailed) as info:
        run(cluster, "v2", extra_values={"autoscaling": {"maxReplicas": 0}})
    assert info.value.failures[0].startswith("upgrade:")
    assert "maxReplicas" in info.value.failures[0]
    assert served(cluster) == "v1"


def test_failed_first_install_is_uninstalled(cluster: FakeCluster) -> None:
    cluster.broken_rollout.add("v1")
    with pytest.raises(GateFailed, match="rollout"):
        run(cluster, "v1")
    assert cluster.calls[-1] == "uninstall"
    assert "recsys-serving" not in cluster.revisions


def test_a_failed_rollback_is_reported_for_a_person(cluster: FakeCluster) -> None:
    run(cluster, "v1")
    cluster.broken_rollout.add("v2")
    cluster.fail_rollback = True
    with pytest.raises(GateFailed) as info:
        run(cluster, "v2")
    assert len(info.value.failures) == 2
    assert "needs a person" in info.value.failures[1]


def test_missing_version_or_bundle_is_an_input_error(cluster: FakeCluster) -> None:
    with pytest.raises(InputError):
        deploy_to_aks("", f"{BUNDLES}/v1", helm=FakeHelm(cluster), kube=FakeKube(cluster))
    assert cluster.calls == []


def test_release_values_layer_files_extras_and_the_bundle(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("image:\n  tag: '9.9.9'\nmodel:\n  version: old\n", encoding="utf-8")
    target = AksTarget(values_files=(PROD, str(extra)), extra_values={"replicaCount": 4})
    values = aks.release_values(target, "v7", f"{BUNDLES}/v7")
    assert values["image"]["tag"] == "9.9.9"
    assert values["image"]["repository"].endswith("/recsys-serve")
    assert values["model"]["version"] == "v7"
    assert values["model"]["bundleUri"] == f"{BUNDLES}/v7"
    assert values["replicaCount"] == 4


@pytest.mark.parametrize("release", ["recsys-serving", "prod", "recsys-serving-canary"])
def test_target_fullname_matches_the_chart(release: str) -> None:
    with helm.Chart.load(aks.default_chart()) as chart:
        live = {"liveStore": {"host": "amr.example", "existingSecret": "redis"}}
        rendered = chart.render(live, name=release, namespace="recsys")
    dep = yaml.safe_load(rendered["recsys-serving/templates/deployment.yaml"])
    assert AksTarget(release=release).fullname == dep["metadata"]["name"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"observed_generation": 1, "replicas": 3, "updated_replicas": 3, "available_replicas": 3},
         (True, None)),
        ({"observed_generation": 1, "replicas": 4, "updated_replicas": 1, "available_replicas": 3},
         (False, None)),
        ({"observed_generation": 0, "replicas": 3, "updated_replicas": 3, "available_replicas": 3},
         (False, None)),
        ({"observed_generation": 1, "replicas": 3, "updated_replicas": 3, "available_replicas": 2},
         (False, None)),
    ],
)  # fmt: skip
def test_rollout_state_follows_kubectl_rollout_status(
    status: dict[str, Any], expected: tuple[bool, str | None]
) -> None:
    dep = {"metadata": {"generation": 1}, "spec": {"replicas": 3}, "status": status}
    assert aks_clients.rollout_state(dep) == expected


def test_rollout_state_reports_a_progress_deadline() -> None:
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 3},
        "status": {
            "observed_generation": 2,
            "conditions": [
                {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "stuck"}
            ],
        },
    }
    done, reason = aks_clients.rollout_state(dep)
    assert not done and reason is not None and "stuck" in reason


class FakeKubeApiClient:
    """Stands in for kubernetes.client.ApiClient: records the proxy call, answers canned data."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def call_api(self, path: str, method: str, **kwargs: Any) -> Any:
        self.calls.append((path, kwargs["query_params"]))

        @dataclass
        class Raw:
            status: int = 200
            data: bytes = b'{"items": []}'

        return (Raw(), 200, {})


def test_kubernetes_client_smoke_goes_through_the_service_proxy() -> None:
    pytest.importorskip("kubernetes")
    api = FakeKubeApiClient()
    client = aks_clients.KubernetesApiClient(api)
    reply = client.get_via_service(
        "recsys", "recsys-serving", "http", "/v1/recommendations/u1?k=5", 3
    )
    assert reply == HttpReply(200, '{"items": []}')
    assert api.calls == [
        ("/api/v1/namespaces/recsys/services/recsys-serving:http/proxy/v1/recommendations/u1",
         [("k", "5")]),
    ]  # fmt: skip


def backend(cluster: FakeCluster) -> AksBackend:
    return AksBackend(
        AksTarget(values_files=(PROD,)), lambda: (FakeHelm(cluster), FakeKube(cluster))
    )


def test_backend_plugs_into_the_deploy_gate(cluster: FakeCluster) -> None:
    deploy = pytest.importorskip("recsys.orchestration.deploy")
    from recsys.orchestration.config import DeployConfig

    built = deploy.get_backend("aks", "unused-registry", DeployConfig(backend="aks"))
    assert isinstance(built, AksBackend) and built.name == "aks"
    assert built._clients is None, "building the backend must not touch the cluster"

    b = backend(cluster)
    assert b.current() is None
    deploy.deploy_bundle(b, f"{BUNDLES}/v1", "v1", smoke=None)
    assert b.current() == "v1"
    result = deploy.deploy_bundle(b, f"{BUNDLES}/v2", "v2", smoke=lambda v: None)
    assert result.previous_version == "v1" and b.current() == "v2"


def test_gate_smoke_failure_rolls_the_release_back_to_the_previous_model(
    cluster: FakeCluster,
) -> None:
    deploy = pytest.importorskip("recsys.orchestration.deploy")
    b = backend(cluster)
    deploy.deploy_bundle(b, f"{BUNDLES}/v1", "v1", smoke=None)
    deploy.deploy_bundle(b, f"{BUNDLES}/v2", "v2", smoke=None)

    def outside_smoke(version: str) -> None:
        raise RuntimeError("the public endpoint times out")

    with pytest.raises(GateFailed, match="rolled back to v2"):
        deploy.deploy_bundle(b, f"{BUNDLES}/v3", "v3", smoke=outside_smoke)
    assert b.current() == "v2"
    assert cluster.calls[-2:] == ["rollback 2", "wait v2"]


def test_backend_rollback_of_a_first_deploy_uninstalls(cluster: FakeCluster) -> None:
    b = backend(cluster)
    b.publish(f"{BUNDLES}/v1", "v1")
    b.rollback(None)
    assert "recsys-serving" not in cluster.revisions
    with pytest.raises(InputError, match="no Helm revision"):
        b.publish(f"{BUNDLES}/v1", "v1")
        b.rollback("v0")


def test_clients_are_built_from_the_airflow_kubernetes_connection(tmp_path: Path) -> None:
    """Real Airflow connection lookup (from the environment), in a subprocess with its own home."""
    pytest.importorskip("airflow")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "aks",
        "clusters": [{"name": "aks", "cluster": {"server": "https://10.0.0.1:443"}}],
        "users": [{"name": "deployer", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "aks", "context": {"cluster": "aks", "user": "deployer"}}],
    }
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": kubeconfig}}
    script = (
        "import json\n"
        "from recsys.orchestration import aks_clients\n"
        "helm, kube = aks_clients.clients_from_airflow_connection('kubernetes_default')\n"
        "print(json.dumps([type(helm).__name__, type(kube).__name__,\n"
        "    json.loads(helm._kubeconfig)['clusters'][0]['cluster']['server'],\n"
        "    kube._api_client.configuration.host]))\n"
    )
    env = dict(
        os.environ,
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW_CONN_KUBERNETES_DEFAULT=json.dumps(conn),
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = json.loads(proc.stdout.strip().splitlines()[-1])
    assert names == [
        "SdkHelmClient",
        "KubernetesApiClient",
        "https://10.0.0.1:443",
        "https://10.0.0.1:443",
    ]
