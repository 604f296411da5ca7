"""helm/airflow/values-aks.yaml, the values for the official Apache Airflow chart on AKS.

The official chart cannot be fetched here (no network), so it is not rendered;
instead every Airflow setting the file sets is checked against the installed
Airflow (and its Azure provider), the secrets backend is built from the
file's own kwargs, and the pipeline config it mounts is parsed by recsys.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "helm" / "airflow" / "values-aks.yaml"
DOCKERFILE = ROOT / "docker" / "airflow.Dockerfile"

# Top-level keys of the official chart's values.yaml (chart 1.18) that this file may use:
# a misspelt key would otherwise be ignored by Helm without a word.
CHART_KEYS = {
    "executor", "airflowVersion", "defaultAirflowRepository", "defaultAirflowTag", "images",
    "dags", "logs", "postgresql", "pgbouncer", "redis", "statsd", "data", "fernetKeySecretName",
    "apiSecretKeySecretName", "jwtSecretName", "labels", "scheduler", "triggerer", "dagProcessor",
    "apiServer", "ingress", "workers", "cleanup", "createUserJob", "webserver", "env",
    "extraConfigMaps", "extraSecrets", "extraEnv", "extraEnvFrom", "volumes", "volumeMounts",
    "config", "secret", "airflowPodAnnotations", "nodeSelector", "tolerations", "affinity",
    "migrateDatabaseJob", "podTemplate", "securityContexts", "imagePullSecrets",
}  # fmt: skip
COMPONENTS = ("scheduler", "triggerer", "dagProcessor", "apiServer", "workers")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def constraint(name: str) -> str:
    text = (ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(name)}==(\S+)$", text, re.MULTILINE)
    assert match
    return match.group(1)


def test_only_keys_the_official_chart_knows(values: dict[str, Any]) -> None:
    assert set(values) <= CHART_KEYS, set(values) - CHART_KEYS


def test_kubernetes_executor_with_our_image_and_baked_dags(values: dict[str, Any]) -> None:
    assert values["executor"] == "KubernetesExecutor"
    pinned = constraint("apache-airflow")
    assert values["airflowVersion"] == pinned
    base = re.search(r"ARG AIRFLOW_IMAGE=apache/airflow:(\S+)", DOCKERFILE.read_text("utf-8"))
    assert base and base.group(1).startswith(pinned + "-")
    image = values["images"]["airflow"]
    assert image["repository"].endswith("/recsys-airflow") and image["tag"]
    assert values["defaultAirflowRepository"] == image["repository"]
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False


def test_secrets_come_from_existing_kubernetes_secrets(values: dict[str, Any]) -> None:
    assert values["data"]["metadataSecretName"]
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    text = VALUES.read_text(encoding="utf-8").lower()
    assert "password:" not in text and "fernetkey:" not in text


def test_every_component_runs_with_workload_identity(values: dict[str, Any]) -> None:
    assert values["labels"]["azure.workload.identity/use"] == "true"
    names = set()
    for component in COMPONENTS:
        sa = values[component]["serviceAccount"]
        assert sa["annotations"]["azure.workload.identity/client-id"], component
        names.add(sa["name"])
    assert len(names) == len(COMPONENTS), "each needs its own federated credential subject"


def test_remote_logs_go_to_the_lake(values: dict[str, Any]) -> None:
    logging = values["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert logging["remote_base_log_folder"].startswith("wasb")
    assert logging["remote_log_conn_id"] == "wasb_default"
    lake = next(e["value"] for e in values["env"] if e["name"] == "RECSYS_LAKE")
    container = values["config"]["azure_remote_logging"]["remote_wasb_log_container"]
    assert lake.startswith(f"abfs://{container}@")
    assert values["logs"]["persistence"]["enabled"] is False


def test_retrain_config_mounted_in_the_pods_is_valid(values: dict[str, Any]) -> None:
    from recsys.orchestration.config import RetrainConfig

    cm = values["extraConfigMaps"]["recsys-retrain-config"]
    data = yaml.safe_load(cm["data"])
    cfg = RetrainConfig.model_validate(yaml.safe_load(data["retrain.yaml"]))
    assert cfg.deploy.backend == "aks"
    assert cfg.azureml.image and cfg.azureml.image.split("/")[-1].startswith("recsys-train:")
    env = {e["name"]: e["value"] for e in values["env"]}
    mount = next(m for m in values["volumeMounts"] if m["name"] == "recsys-retrain-config")
    assert env["RECSYS_RETRAIN_CONFIG"] == f"{mount['mountPath']}/retrain.yaml"
    assert {"RECSYS_AKS_CONN_ID", "RECSYS_AKS_NAMESPACE", "RECSYS_AKS_RELEASE"} <= set(env)


def test_airflow_accepts_every_setting_and_builds_the_key_vault_backend(
    values: dict[str, Any], tmp_path: Path
) -> None:
    """In a subprocess with its own AIRFLOW_HOME: the installed Airflow 3 judges the config."""
    pytest.importorskip("airflow")
    script = """
import importlib, json, sys
from airflow.configuration import conf
settings = json.loads(sys.argv[1])
unknown = [f"{s}.{k}" for s, opts in settings.items() for k in opts if not conf.has_option(s, k)]
module, _, name = settings["secrets"]["backend"].rpartition(".")
backend = getattr(importlib.import_module(module), name)
kwargs = json.loads(settings["secrets"]["backend_kwargs"])
instance = backend(**kwargs)  # builds no client: Key Vault is contacted on the first lookup
print(json.dumps({"unknown": unknown, "backend": type(instance).__name__,
                  "path": instance.build_path(instance.connections_prefix, "azureml_default")}))
"""
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(values["config"])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["unknown"] == []
    assert result["backend"] == "AzureKeyVaultBackend"
    # The guide stores the Azure ML connection under exactly this Key Vault secret name.
    assert result["path"] == "airflow-connections-azureml-default"
    guide = (ROOT / "docs" / "deploy-azure.md").read_text(encoding="utf-8")
    assert result["path"] in guide
