"""Typed configuration of the orchestrated pipeline.

Read at task run time (never at DAG parse time) from the file named by
``RECSYS_RETRAIN_CONFIG`` (JSON, YAML or TOML), with the lake and registry
taken from :class:`recsys.config.Settings` unless the file sets them.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from recsys.config import Settings, load_config

CONFIG_ENV = "RECSYS_RETRAIN_CONFIG"


class AzureMLConfig(BaseModel):
    """Where and how the training command job runs on Azure ML."""

    model_config = ConfigDict(extra="forbid")

    conn_id: str = "azureml_default"
    """Airflow connection: login/password = service principal, extras = subscription_id,
    resource_group, workspace_name, tenant_id (or managed_identity_client_id /
    workload_identity_tenant_id for a managed or workload identity)."""
    compute: str = "gpu-cluster"
    environment: str = "azureml:recsys-train:1"
    """A registered environment (``azureml:name:version``) or, with ``image`` set, ignored."""
    image: str | None = None
    """Training image (``<acr>.azurecr.io/recsys-train:TAG``); builds an inline environment."""
    datastore: str = "lake"
    """The Azure ML datastore registered on the lake's ADLS container."""
    datastore_root: str | None = None
    """The lake URI prefix the datastore points at (``abfs://lake@acct.dfs.core.windows.net``);
    ``None`` means the lake URI's container root."""
    instance_count: PositiveInt = 1
    process_count_per_instance: PositiveInt = 1
    """GPUs per node: DDP launches this many training processes on each instance."""
    instance_type: str | None = None
    shm_size: str = "16g"
    experiment_name: str = "recsys-retrain"
    train_command: str = (
        "recsys train --graph ${{inputs.graph}} --out ${{outputs.model}} --device cuda"
    )
    """``${{outputs.model}}`` stands for the model folder inside the mounted ``outputs.models``;
    ``--checkpoint`` (and ``--config`` when the run has a training config) are appended and the
    whole runs under ``torchrun`` for DDP (see ``build_command_job``)."""
    poll_interval_s: float = Field(30.0, gt=0)
    timeout_s: PositiveInt = 6 * 3600
    """The longest wait for the job; a job still running then is cancelled."""
    deferrable: bool = True


class DatabricksJobConfig(BaseModel):
    """Where ``engine = spark`` with ``spark.cluster = databricks`` runs a data step: a one-time
    Azure Databricks run (``runs/submit``) of the project's wheel (see
    :mod:`recsys.orchestration.databricks_job`)."""

    model_config = ConfigDict(extra="forbid")

    conn_id: str = "databricks_default"
    """Airflow connection of the Databricks provider: the workspace URL as host; a Microsoft
    Entra ID service principal (login/password + ``azure_tenant_id`` extra), a managed
    identity (``use_azure_managed_identity``) or a token."""
    wheel: str = "/Volumes/main/recsys/wheels/recsys-0.1.0-py3-none-any.whl"
    """The project's wheel (``python -m build``) where the cluster can install it: a Unity
    Catalog volume or a workspace file."""
    pypi: list[str] = Field(default_factory=lambda: ["great-expectations>=1.2,<2"])
    """Packages the data steps need that the Databricks runtime does not bring."""
    existing_cluster_id: str | None = None
    """Run on this all-purpose cluster instead of a new job cluster."""
    spark_version: str = "17.3.x-scala2.13"
    """Databricks runtime of the job cluster: Spark 4.0 or later (the engine collects with
    ``DataFrame.toArrow``) and Python 3.11 or later."""
    node_type_id: str = "Standard_E8ds_v5"
    """Worker (and driver) VM size: 8 vCPU, 64 GiB, local NVMe for shuffle."""
    driver_node_type_id: str | None = None
    """The driver's VM size when it differs (it holds the snapshot: users, products, edges)."""
    min_workers: PositiveInt = 2
    max_workers: PositiveInt = 8
    spark_env_vars: dict[str, str] = Field(default_factory=dict)
    """Environment of the cluster's processes, e.g. ``AZURE_STORAGE_ACCOUNT_NAME`` and
    ``AZURE_CLIENT_ID`` for the driver's fsspec (adlfs) writes to the lake."""
    spark_conf: dict[str, str] = Field(
        default_factory=lambda: {"spark.sql.session.timeZone": "UTC"}
    )
    timeout_s: PositiveInt = 3 * 3600
    """The longest a run may take; Databricks cancels it then."""
    poll_interval_s: PositiveInt = 30
    deferrable: bool = True
    """Wait for the run in the triggerer (no worker slot held) or poll from the worker."""

    def cluster_spec(self) -> dict[str, Any]:
        """The job cluster (``new_cluster``): autoscaling workers, Photon off (the steps are
        Python-heavy on the driver), the session in UTC."""
        spec: dict[str, Any] = {
            "spark_version": self.spark_version,
            "node_type_id": self.node_type_id,
            "autoscale": {"min_workers": self.min_workers, "max_workers": self.max_workers},
            "spark_conf": dict(self.spark_conf),
            "data_security_mode": "SINGLE_USER",
        }
        if self.driver_node_type_id:
            spec["driver_node_type_id"] = self.driver_node_type_id
        if self.spark_env_vars:
            spec["spark_env_vars"] = dict(self.spark_env_vars)
        return spec


class SparkJobConfig(BaseModel):
    """Where ``engine = spark`` runs the data gate and the graph build."""

    model_config = ConfigDict(extra="forbid")

    cluster: Literal["local", "databricks"] = "local"
    """``local``: PySpark in local mode, in a child process of the Airflow worker (the
    ``recsys`` command line with ``--engine spark``); ``databricks``: an Azure Databricks
    run of the same command line, waited for in the triggerer."""
    master: str = "local[*]"
    """The local mode's master (``RECSYS_SPARK_MASTER`` of the child process)."""
    databricks: DatabricksJobConfig = DatabricksJobConfig()


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "aks"] = "local"
    serve_url: str | None = None
    """Live endpoint to smoke-test (``http://127.0.0.1:8000``); ``None`` skips the live check."""
    readiness_timeout_s: float = Field(60.0, gt=0)
    smoke_user: str | None = None
    """User id for the smoke query; default: the first user of the graph snapshot."""
    api_key: str | None = None


class SensorConfig(BaseModel):
    """How long and how often ``wait_for_events`` looks for the day's events partition."""

    model_config = ConfigDict(extra="forbid")

    poke_interval_s: float = Field(300.0, gt=0)
    timeout_s: PositiveInt = 12 * 3600
    """The run fails when the partition has not landed by then."""


class RetrainConfig(BaseModel):
    """The pipeline's configuration; a key it does not know is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")

    lake: str | None = None
    """Lake URI; ``None``: ``RECSYS_LAKE``."""
    start_date: dt.date | None = None
    """First day the pipeline processes: a run (scheduled, triggered or backfilled) for an
    earlier day fails, naming this setting. ``None``: any day the lake has events for (a run
    for a day before the lake's first events partition fails, naming it)."""
    registry: str | None = None
    """Registry URI; ``None``: ``RECSYS_REGISTRY``."""
    validation_config: str | None = None
    graph_config: str | None = None
    train_config: str | None = None
    model_gate_config: str | None = None
    """File of the model gate (:class:`recsys.evaluation.gate.ModelGateConfig`: metric,
    margins, bootstrap, the undecided policy)."""
    export_config: str | None = None
    train_device: str = "cpu"
    """``--device`` of local training: ``cpu`` or ``cuda``."""
    train_budget_s: float | None = Field(default=None, gt=0)
    """Training time budget of a run (``max_train_seconds`` of the training config): the loop
    keeps the best validation checkpoint within it. ``None``: the config's own."""
    warm_start: bool = True
    """Local training starts from the latest model run of an earlier day (in a daily
    pipeline, production's: ``recsys train --init-from``; cold, with the reason in the model's
    report, when there is none or it cannot apply)."""
    evaluation: Literal["gate", "full"] = "gate"
    """What ``recsys evaluate`` scores for the model gate, per holdout user: ``gate``: the
    candidate, popularity and the production bundle (one forward pass each); ``full``: also
    EASE, GF-CF and MF-BPR (retrained: about twice the cost of training), for the report."""
    live_store: str | None = None
    """The servers' live store, which the compaction drains: ``memory`` (read ``event_log``)
    or ``redis://`` / ``rediss://`` (its stream); default ``$RECSYS_LIVE_STORE``, else memory."""
    event_log: str = "./serving-events"
    """The ``memory`` store's durable JSONL log: its file, or the folder of it and its
    rotations."""
    azureml: AzureMLConfig = AzureMLConfig()
    engine: Literal["local", "spark"] = "local"
    """The data engine of the data gate and the graph build: ``local`` (pyarrow / pandas in
    the worker) or ``spark`` (PySpark: see ``spark``). Same checks, same snapshot."""
    spark: SparkJobConfig = SparkJobConfig()
    deploy: DeployConfig = DeployConfig()
    sensor: SensorConfig = SensorConfig()

    @field_validator("evaluation", mode="before")
    @classmethod
    def _recorded_is_gate(cls, v: Any) -> Any:
        # "recorded" (the metrics training recorded) cannot pair users: it means "gate" now
        return "gate" if v == "recorded" else v

    def resolved_lake(self) -> str:
        return self.lake or Settings().lake

    def resolved_registry(self) -> str:
        return self.registry or Settings().registry

    def resolved_live_store(self) -> str:
        return self.live_store or Settings().live_store


SERVE_URL_ENV = "RECSYS_SERVE_URL"


def load_retrain_config(path: str | None = None) -> RetrainConfig:
    """The pipeline config: ``path``, else ``$RECSYS_RETRAIN_CONFIG``, else the defaults.

    ``$RECSYS_SERVE_URL`` names the live endpoint to smoke-test when the file does not.
    """
    cfg = load_config(path or os.environ.get(CONFIG_ENV) or None, RetrainConfig)
    if cfg.deploy.serve_url is None and os.environ.get(SERVE_URL_ENV):
        deploy = cfg.deploy.model_copy(update={"serve_url": os.environ[SERVE_URL_ENV]})
        cfg = cfg.model_copy(update={"deploy": deploy})
    return cfg
