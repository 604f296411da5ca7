"""The inference chart, rendered by a real Helm engine and checked against Kubernetes schemas.

helm-python-sdk embeds Helm v4 (no helm binary, no cluster): ``Chart.render`` is
``helm template``, including the values.schema.json check that ``helm install``
does. kubernetes-validate holds the OpenAPI schemas of each Kubernetes release;
``strict`` refuses unknown fields, which is what catches an indentation slip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kv = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "recsys-serving"
PROD_VALUES = ROOT / "helm" / "values-production.yaml"
# The AKS minor the guide installs, and the newest kubernetes-validate knows (API removals).
KUBE_VERSIONS = ("1.34", "1.37")
# Custom resources that kubernetes-validate has no schema for; checked by hand below.
CRD_KINDS = {"ServiceMonitor"}
RELEASE = "recsys-serving"
NAMESPACE = "recsys"


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def prod_values() -> dict[str, Any]:
    values = yaml.safe_load(PROD_VALUES.read_text(encoding="utf-8"))
    assert isinstance(values, dict)
    return values


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# What every install must add to the defaults: the shared live store (and its key).
LIVE_STORE = {
    "liveStore": {"host": "amr-test.westeurope.redis.azure.net", "existingSecret": "recsys-redis"}
}


def render(
    chart: Any, values: dict[str, Any] | None = None, live_store: bool = True
) -> dict[str, str]:
    """``helm template``; ``live_store`` adds LIVE_STORE under values that set none."""
    if live_store and "liveStore" not in (values or {}):
        values = deep_merge(LIVE_STORE, values or {})
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def server_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


CASES = {
    "default": None,
    "production": "prod",
    "production-new-bundle": "prod-bundle",
}


def values_for(case: str) -> dict[str, Any] | None:
    if case == "default":
        return None
    values = prod_values()
    if case == "prod-bundle":
        values = deep_merge(
            values,
            {
                "model": {
                    "version": "20261127-abc123",
                    "bundleUri": "abfs://lake@recsysdata.dfs.core.windows.net/bundles/20261127-abc123",
                }
            },
        )
    return values


@pytest.fixture(scope="module", params=["default", "prod", "prod-bundle"])
def rendered(request: pytest.FixtureRequest, chart: Any) -> tuple[str, list[dict[str, Any]]]:
    return request.param, manifests(render(chart, values_for(request.param)))


def test_every_manifest_validates_against_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    case, docs = rendered
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler"} <= kinds
    assert "PodDisruptionBudget" in kinds and "Pod" in kinds
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                name = f"{doc['kind']}/{doc['metadata']['name']}"
                pytest.fail(f"[{case}] k8s {version}: {name}: {where}: {exc.message}")
        checked += 1
    assert checked >= 6


def test_rolling_update_never_drops_capacity(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    dep = the(docs, "Deployment")
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    # With an HPA the Deployment must not carry replicas, or every upgrade would reset the scale.
    assert "replicas" not in dep["spec"]


def test_probes_point_at_readiness_and_liveness(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    c = server_container(the(docs, "Deployment"))
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    startup_budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert startup_budget >= 120, "a bundle load needs minutes before liveness may kill the pod"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


def test_draining_sleeps_before_sigterm_within_grace(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    spec = the(docs, "Deployment")["spec"]["template"]["spec"]
    command = server_container(the(docs, "Deployment"))["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    sleep = int(command[1])
    assert sleep > 0
    assert spec["terminationGracePeriodSeconds"] >= sleep + 20


def test_pod_runs_non_root_on_read_only_root(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    pods = [the(docs, "Deployment")["spec"]["template"]["spec"], the(docs, "Pod")["spec"]]
    for spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp


def test_hpa_and_pdb_target_the_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    dep = the(docs, "Deployment")
    hpa = the(docs, "HorizontalPodAutoscaler")
    pdb = the(docs, "PodDisruptionBudget")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    # Evictions must stay possible: the PDB may never demand every replica.
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    svc = the(docs, "Service")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_helm_test_hook_queries_readyz_and_a_recommendation(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    pod = the(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    script = pod["spec"]["containers"][0]["args"][0]
    svc = the(docs, "Service")
    assert (
        f"http://{svc['metadata']['name']}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}"
        in script
    )
    assert "/readyz" in script and "/v1/recommendations/" in script
    compile(script, "helm-test", "exec")  # the embedded smoke script is valid Python


def test_model_version_annotation_rolls_pods_only_when_the_bundle_changes(chart: Any) -> None:
    def pod_annotations(version: str, uri: str) -> dict[str, str]:
        values = deep_merge(prod_values(), {"model": {"version": version, "bundleUri": uri}})
        dep = the(manifests(render(chart, values)), "Deployment")
        annotations: dict[str, str] = dep["spec"]["template"]["metadata"]["annotations"]
        return annotations

    a = pod_annotations("v1", "abfs://lake@acct.dfs.core.windows.net/bundles/v1")
    a_again = pod_annotations("v1", "abfs://lake@acct.dfs.core.windows.net/bundles/v1")
    b = pod_annotations("v2", "abfs://lake@acct.dfs.core.windows.net/bundles/v2")
    same_version_new_uri = pod_annotations("v1", "abfs://lake@acct.dfs.core.windows.net/other/v1")
    assert a == a_again, "an unchanged bundle must not roll the pods"
    assert a["recsys.io/model-version"] == "v1" and b["recsys.io/model-version"] == "v2"
    assert a["checksum/model"] != b["checksum/model"]
    assert a["checksum/model"] != same_version_new_uri["checksum/model"]


def test_bundle_mode_passes_the_bundle_and_registry_mode_the_registry(chart: Any) -> None:
    docs = manifests(render(chart, values_for("prod-bundle")))
    c = server_container(the(docs, "Deployment"))
    i = c["args"].index("--bundle")
    assert c["args"][0] == "serve" and c["args"][i + 1].endswith("/bundles/20261127-abc123")
    assert "--registry" not in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["RECSYS_MODEL_VERSION"]["value"] == "20261127-abc123"
    assert env["RECSYS_LAKE"]["value"].startswith("abfs://")
    assert env["RECSYS_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "recsys-serving-api-key",
        "key": "api-key",
    }

    default = server_container(the(manifests(render(chart)), "Deployment"))
    assert default["args"][:3] == ["serve", "--bundle", "/app/bundle"]

    registry = deep_merge(prod_values(), {"model": {"bundleUri": ""}})
    c = server_container(the(manifests(render(chart, registry)), "Deployment"))
    assert c["args"][:3] == ["serve", "--registry", prod_values()["model"]["registryUri"]]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RECSYS_REGISTRY"] == prod_values()["model"]["registryUri"]


def test_production_uses_workload_identity_existing_secret_and_servicemonitor(chart: Any) -> None:
    docs = manifests(render(chart, prod_values()))
    sa = the(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
    labels = the(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    assert (
        the(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        == sa["metadata"]["name"]
    )
    assert not by_kind(docs, "Secret"), "production reads the API key from an existing secret"
    sm = the(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }


def test_default_install_generates_an_api_key_secret(chart: Any) -> None:
    docs = manifests(render(chart))
    secret = the(docs, "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(secret["data"]["api-key"]) >= 40
    assert not by_kind(docs, "ServiceMonitor")


def test_pdb_is_skipped_when_it_would_block_every_eviction(chart: Any) -> None:
    docs = manifests(render(chart, {"autoscaling": {"enabled": False}, "replicaCount": 1}))
    assert not by_kind(docs, "PodDisruptionBudget")
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert the(docs, "Deployment")["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"model": {"version": "has spaces"}}, "/model/version"),
        ({"model": {"bundleUri": "", "registryUri": ""}}, "/model"),
        ({"containerSecurityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        (
            {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
            "allowPrivilegeEscalation",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"rollingUpdate": {"maxSurge": "lots"}}, "/rollingUpdate/maxSurge"),
        ({"autoscaling": {"targetCPUUtilizationPercentage": 150}}, "targetCPUUtilization"),
        (
            {"serviceAccount": {"workloadIdentity": {"enabled": True, "clientId": "nope"}}},
            "clientId",
        ),
        ({"replicas": 3}, "replicas"),  # a typo of replicaCount must not pass silently
    ],
)
def test_values_breaking_the_schema_are_refused(
    chart: Any, override: dict[str, Any], where: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as info:
        render(chart, override)
    assert where in str(info.value)


def test_template_guards_refuse_inconsistent_values(chart: Any) -> None:
    with pytest.raises(helm.HelmError, match="clientId"):
        render(chart, {"serviceAccount": {"workloadIdentity": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="minReplicas"):
        render(chart, {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}})


def test_helm_lint_is_clean_for_both_values_files() -> None:
    for values in (None, prod_values()):
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not errors, errors


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_live_store_is_shared_by_every_replica(chart: Any) -> None:
    env = env_of(server_container(the(manifests(render(chart)), "Deployment")))
    assert env["RECSYS_LIVE_STORE"] == "rediss://amr-test.westeurope.redis.azure.net:10000/0"
    assert env["RECSYS_LIVE_STORE_AUTH"] == "key"
    assert env["RECSYS_LIVE_STORE_PASSWORD"] == {
        "secretKeyRef": {"name": "recsys-redis", "key": "redis-key"}
    }
    prod = env_of(server_container(the(manifests(render(chart, prod_values())), "Deployment")))
    assert prod["RECSYS_LIVE_STORE"].startswith("rediss://") and "RECSYS_EVENT_LOG" not in prod
    assert prod["RECSYS_LIVE_STORE_AUTH"] == "entra" and "RECSYS_LIVE_STORE_PASSWORD" not in prod
    lone = {
        "liveStore": {"backend": "memory"},
        "autoscaling": {"enabled": False},
        "replicaCount": 1,
    }
    env = env_of(server_container(the(manifests(render(chart, lone)), "Deployment")))
    assert env["RECSYS_LIVE_STORE"] == "memory"
    assert env["RECSYS_EVENT_LOG"] == "/tmp/serving-events"  # the emptyDir, never the image


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "set liveStore.host"),
        ({"liveStore": {"backend": "memory"}}, "keeps each pod's live events to itself"),
        ({"liveStore": {"host": "h"}}, "set liveStore.existingSecret"),
        ({"liveStore": {"host": "h", "auth": "entra"}}, "needs serviceAccount.workloadIdentity"),
        ({"liveStore": {"host": "h", "tls": "yes"}}, "tls"),
    ],
)
def test_live_store_values_that_would_break_real_time_are_refused(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        render(chart, values, live_store=False)
