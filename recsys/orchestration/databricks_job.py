"""The Azure Databricks run that executes a data step (the data gate, the graph build) on
Spark: a one-time ``runs/submit`` payload, checked by the Databricks SDK's own models.

Kept free of Airflow (like :mod:`recsys.orchestration.azureml_job`), so tests and a person
can build and check the very payload the operator
(:class:`recsys.orchestration.spark_steps.DataStepOperator`) submits.

The task is a ``python_wheel_task`` that calls the ``recsys`` console script of the
project's wheel with the same arguments the local engine's child process gets
(:func:`step_args`): ``recsys validate ... --engine spark`` / ``recsys build-graph ...
--engine spark``. On the cluster the driver finds Databricks' Spark session, reads the lake
through ``abfss://`` and writes the report and the snapshot through fsspec (adlfs: the
cluster's environment gives it the storage account and identity, see
:class:`~recsys.orchestration.config.DatabricksJobConfig`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from typing import Any, Literal

from recsys.errors import InputError
from recsys.orchestration.config import DatabricksJobConfig, RetrainConfig
from recsys.orchestration.paths import RunPaths

Step = Literal["validate", "build_graph"]
STEPS: tuple[Step, ...] = ("validate", "build_graph")


def step_args(step: Step, p: RunPaths, cfg: RetrainConfig, engine: str) -> list[str]:
    """``recsys`` arguments of a data step: the same for a child process on the Airflow
    worker and for the Databricks task."""
    if step == "validate":
        args = [
            "validate",
            "--lake",
            p.lake,
            "--date",
            p.day.isoformat(),
            "--report",
            p.validation_report,
        ]
        config = cfg.validation_config
    elif step == "build_graph":
        args = [
            "build-graph",
            "--lake",
            p.lake,
            "--as-of",
            p.day.isoformat(),
            "--out",
            p.graph,
            "--report",
            p.graph_report,
        ]
        config = cfg.graph_config
    else:
        raise InputError(f"{step!r}: not a data step ({', '.join(STEPS)})")
    if config:
        args += ["--config", config]
    return [*args, "--engine", engine]


def report_of(step: Step, p: RunPaths) -> str:
    """The gate report a data step writes, pass or fail."""
    return p.validation_report if step == "validate" else p.graph_report


def build_submit_run(
    dbx: DatabricksJobConfig,
    step: Step,
    p: RunPaths,
    cfg: RetrainConfig,
    *,
    run_id: str,
    try_number: int,
) -> dict[str, Any]:
    """The ``runs/submit`` payload of ``step`` for this try, checked by
    :func:`validate_submit_run`.

    The idempotency token names the step, the day, the Airflow run and the try: a retried
    submit call of the same try (a lost response) finds the run it already started instead of
    starting a second one, and a new try starts afresh."""
    task: dict[str, Any] = {
        "task_key": f"recsys_{step}",
        "description": f"recsys {step} for {p.day.isoformat()} (engine spark)",
        "python_wheel_task": {
            "package_name": "recsys",
            "entry_point": "recsys",
            "parameters": step_args(step, p, cfg, "spark"),
        },
        "libraries": [{"whl": dbx.wheel}, *[{"pypi": {"package": pkg}} for pkg in dbx.pypi]],
        "timeout_seconds": dbx.timeout_s,
    }
    if dbx.existing_cluster_id:
        task["existing_cluster_id"] = dbx.existing_cluster_id
    else:
        task["new_cluster"] = dbx.cluster_spec()
    token = hashlib.sha256(f"{step}|{p.day}|{run_id}|{try_number}".encode()).hexdigest()[:32]
    payload = {
        "run_name": f"recsys {step} {p.day.isoformat()}",
        "tasks": [task],
        "timeout_seconds": dbx.timeout_s,
        "idempotency_token": f"recsys-{step}-{token}",
    }
    validate_submit_run(payload)
    return payload


def validate_submit_run(payload: dict[str, Any]) -> None:
    """Check a ``runs/submit`` payload with the Databricks SDK's own models: every top-level
    field is a parameter of ``JobsAPI.submit``, every task reads into the SDK's ``SubmitTask``
    and back to the very same dictionary (a misspelled or misplaced field would be dropped),
    and no required field of any model on the way is missing."""
    from databricks.sdk.service.jobs import JobsAPI, SubmitTask

    allowed = set(inspect.signature(JobsAPI.submit).parameters) - {"self"}
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise InputError(
            f"Databricks run: unknown field(s) {unknown} (runs/submit takes {sorted(allowed)})"
        )
    tasks = payload.get("tasks") or []
    if not tasks:
        raise InputError("Databricks run: no task")
    for t in tasks:
        model = SubmitTask.from_dict(t)
        back = model.as_dict()
        if back != t:
            raise InputError(
                f"Databricks task {t.get('task_key')!r}: not a valid SubmitTask: "
                f"{_difference(t, back)}"
            )
        missing = _missing_required(model, "task")
        if missing:
            raise InputError(
                f"Databricks task {t.get('task_key')!r}: required field(s) "
                f"missing: {', '.join(missing)}"
            )
        if bool(t.get("existing_cluster_id")) == bool(t.get("new_cluster")):
            raise InputError(
                f"Databricks task {t.get('task_key')!r}: needs exactly one of "
                "existing_cluster_id and new_cluster"
            )


def _missing_required(obj: Any, where: str) -> list[str]:
    """Required fields (no default) left None, in ``obj`` and the models inside it."""
    out: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if value is None:
            if required:
                out.append(f"{where}.{f.name}")
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item):
                sub = f"{where}.{f.name}" + (f"[{i}]" if isinstance(value, list) else "")
                out += _missing_required(item, sub)
    return out


def _difference(given: Any, back: Any, where: str = "") -> str:
    """Where the SDK's reading of a payload differs from it (the first place)."""
    if isinstance(given, dict) and isinstance(back, dict):
        for k in given:
            if k not in back:
                return f"field {where + k!r} is not part of the model"
            if given[k] != back[k]:
                return _difference(given[k], back[k], f"{where}{k}.")
        return f"field(s) {sorted(set(back) - set(given))} added by the model"
    if isinstance(given, list) and isinstance(back, list) and len(given) == len(back):
        for i, (a, b) in enumerate(zip(given, back, strict=True)):
            if a != b:
                return _difference(a, b, f"{where}[{i}].")
    return f"{where.rstrip('.')}: {given!r} reads as {back!r}"
