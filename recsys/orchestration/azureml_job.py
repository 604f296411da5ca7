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

    Output: the model's *parent* folder is mounted read-write (output
    ``models``), and ``${{outputs.model}}`` in ``cfg.train_command`` becomes
    ``${{outputs.models}}/<model folder>``. So the staging folder the artifact
    is written to before its rename, and the resumable checkpoint
    (``--checkpoint <model>.checkpoint``), are all inside the mount: a retried
    job finds the checkpoint in the lake and continues, and the publishing
    rename never crosses the mount point.

    DDP: with ``process_count_per_instance * instance_count`` > 1 the training
    runs under ``torchrun`` (one launcher per node: Azure ML's PyTorch
    distribution with one process per instance sets ``NODE_RANK`` and
    ``MASTER_ADDR``/``MASTER_PORT``; torchrun starts one worker per GPU and
    tears the whole job down when any worker fails).
    """
    from azure.ai.ml import Input, Output, PyTorchDistribution, command
    from azure.ai.ml.constants import AssetTypes, InputOutputModes
    from azure.ai.ml.entities import Environment

    environment: Any = Environment(image=cfg.image) if cfg.image else cfg.environment
    env_vars = {"RECSYS_LOGICAL_DATE": day.isoformat(), "RECSYS_RUN_ID": name}
    model_root, _, leaf = model_uri.rstrip("/").rpartition("/")
    if not model_root or not leaf:
        raise InputError(f"{model_uri}: the model must be a folder inside the lake")
    model_out = f"${{{{outputs.models}}}}/{leaf}"
    train_command = cfg.train_command.replace("${{outputs.model}}", model_out)
    train_command = f"{train_command} --checkpoint {model_out}.checkpoint"
    nproc, nodes = cfg.process_count_per_instance, cfg.instance_count
    if nproc * nodes > 1:
        if nodes == 1:
            launcher = f"torchrun --standalone --nproc_per_node {nproc}"
        else:
            launcher = (
                f"torchrun --nnodes {nodes} --nproc_per_node {nproc} --node_rank $NODE_RANK "
                "--master_addr $MASTER_ADDR --master_port $MASTER_PORT"
            )
        # --no-python: the training command is the `recsys` console script, not a .py file
        train_command = f"{launcher} --no-python {train_command}"
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
            "models": Output(
                type=AssetTypes.URI_FOLDER,
                path=datastore_uri(model_root, cfg),
                mode=InputOutputModes.RW_MOUNT,
            )
        },
        # one torchrun per node; it starts the per-GPU workers itself
        distribution=PyTorchDistribution(process_count_per_instance=1),
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
