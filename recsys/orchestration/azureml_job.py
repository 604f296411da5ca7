"""The Azure ML command job that trains a model, built with azure-ai-ml entities.

Kept free of Airflow so the deploy issue and tests can build and validate the
same job; the operator in :mod:`recsys.orchestration.operators` submits it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

from recsys.errors import InputError
from recsys.orchestration.config import AzureMLConfig

# Azure ML job states (azure.ai.ml.operations._run_history_constants.JobStatus).
SUCCEEDED = frozenset({"Completed"})
FAILED = frozenset({"Failed", "Canceled", "NotResponding", "Paused"})
"""Paused needs a person: for a nightly pipeline it is as final as a failure."""
TERMINAL = SUCCEEDED | FAILED


def datastore_uri(lake_uri: str, cfg: AzureMLConfig) -> str:
    """Map a lake URI on ADLS to the ``azureml://datastores/...`` path of the same folder.

    The job then mounts the folder through the workspace datastore (its
    identity reads the lake) instead of copying it or holding a key.
    """
    uri = lake_uri.rstrip("/")
    if cfg.datastore_root:
        root = cfg.datastore_root.rstrip("/")
        if uri != root and not uri.startswith(root + "/"):
            raise InputError(f"{lake_uri}: not under the datastore root {cfg.datastore_root}")
        rel = uri[len(root) :].lstrip("/")
    else:
        parts = urlsplit(uri)
        if parts.scheme not in {"abfs", "abfss", "az"}:
            raise InputError(
                f"{lake_uri}: Azure ML reads the lake through a datastore; "
                "use an abfs:// lake or set azureml.datastore_root"
            )
        # abfs://container/path and abfs://container@account.dfs.core.windows.net/path
        rel = (
            parts.path.lstrip("/")
            if "@" in parts.netloc
            else f"{parts.netloc}{parts.path}".split("/", 1)[-1]
        )
    if not rel:
        raise InputError(f"{lake_uri}: is the datastore root itself, not an artifact folder")
    return f"azureml://datastores/{cfg.datastore}/paths/{rel}/"


def build_command_job(
    cfg: AzureMLConfig,
    *,
    graph_uri: str,
    model_uri: str,
    name: str,
    day: dt.date,
    tags: dict[str, str] | None = None,
    train_config: dict[str, Any] | None = None,
) -> Any:
    """A validated ``azure.ai.ml`` command job: training image, GPU cluster, lake in, model out.

    ``process_count_per_instance`` > 1 (or ``instance_count`` > 1) runs the
    command under Azure ML's PyTorch launcher, which starts one process per GPU
    with the ``torch.distributed`` environment (RANK, WORLD_SIZE, MASTER_ADDR) set for DDP.
    """
    from azure.ai.ml import Input, Output, PyTorchDistribution, command
    from azure.ai.ml.constants import AssetTypes, InputOutputModes
    from azure.ai.ml.entities import Environment

    environment: Any = Environment(image=cfg.image) if cfg.image else cfg.environment
    env_vars = {"RECSYS_LOGICAL_DATE": day.isoformat(), "RECSYS_RUN_ID": name}
    train_command = cfg.train_command
    if train_config:
        # The CLI reads its TrainConfig from a file: ship it in the job spec, write it first.
        env_vars["RECSYS_TRAIN_CONFIG_JSON"] = json.dumps(train_config, sort_keys=True)
        train_command = (
            'printf "%s" "$RECSYS_TRAIN_CONFIG_JSON" > recsys_train.json && '
            f"{train_command} --config recsys_train.json"
        )
    job = command(
        name=name,
        display_name=f"recsys train {day.isoformat()}",
        experiment_name=cfg.experiment_name,
        command=train_command,
        environment=environment,
        compute=cfg.compute,
        inputs={
            "graph": Input(
                type=AssetTypes.URI_FOLDER,
                path=datastore_uri(graph_uri, cfg),
                mode=InputOutputModes.RO_MOUNT,
            )
        },
        outputs={
            "model": Output(
                type=AssetTypes.URI_FOLDER,
                path=datastore_uri(model_uri, cfg),
                mode=InputOutputModes.RW_MOUNT,
            )
        },
        distribution=PyTorchDistribution(process_count_per_instance=cfg.process_count_per_instance),
        instance_count=cfg.instance_count,
        instance_type=cfg.instance_type,
        shm_size=cfg.shm_size,
        environment_variables=env_vars,
        tags={"recsys.day": day.isoformat(), **(tags or {})},
    )
    validate_job(job)
    return job


def validate_job(job: Any) -> None:
    """Run azure-ai-ml's own schema validation (what ``jobs.create_or_update`` runs first)."""
    result = job._validate(raise_error=False)
    if not result.passed:
        raise InputError(f"Azure ML command job {job.name}: invalid: {result.error_messages}")
    # The REST payload is what the control plane receives; building it checks the rest.
    job._to_job()._to_rest_object()
