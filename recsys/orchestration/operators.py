"""The Azure ML training operator: submit a command job, wait (deferred or polling), cancel.

Whichever way the wait ends without the job finishing, the job is cancelled: the
polling wait at its timeout, the deferred wait by its trigger at the trigger's end time
(and, should the triggerer miss it, when the deferral times out), a killed task by
``on_kill`` (polling) or the trigger's ``on_kill`` (deferred).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
from airflow.sdk.exceptions import AirflowException

from recsys.orchestration.azureml import SUCCEEDED, TERMINAL, AzureMLHook
from recsys.orchestration.azureml_job import build_command_job
from recsys.orchestration.config import AzureMLConfig, load_retrain_config
from recsys.orchestration.links import AzureMLJobLink
from recsys.orchestration.paths import azureml_job_name, day_of
from recsys.orchestration.triggers import AzureMLJobTrigger

JOB_NAME_KEY = "azureml_job_name"
CANCEL_GRACE_S = 120.0
"""Time the trigger has, after its end time, to cancel the job before the deferral times out."""


class AzureMLJobFailed(AirflowException):
    """The Azure ML job ended in a state other than Completed, or timed out."""


class AzureMLCommandJobOperator(BaseOperator):
    """Train on Azure ML: the graph snapshot in, the model folder out, both in the lake.

    :param graph_uri: graph snapshot folder in the lake (mounted read-only as ``inputs.graph``).
    :param model_uri: model folder in the lake (its parent folder is mounted read-write as
        ``outputs.models``, so the checkpoint beside it survives a retried job).
    :param day: the run's data day (``YYYY-MM-DD``), for the job name and tags.
    :param epochs: overrides the training config's epochs; ``None``: the run's ``epochs``
        param (an integer or null, validated by the DAG's ``Param``), else the config's.
    :param azureml: job settings; ``None`` reads them from the pipeline config at run time.
    :param deferrable: wait in the triggerer (default from config) or poll in the worker.
    :param wait_for_completion: ``False`` returns once the job is submitted.
    """

    template_fields: Sequence[str] = ("graph_uri", "model_uri", "day", "job_name")
    operator_extra_links = (AzureMLJobLink(),)
    ui_color = "#cce5ff"

    def __init__(
        self,
        *,
        graph_uri: str,
        model_uri: str,
        day: str,
        epochs: int | None = None,
        azureml: AzureMLConfig | dict[str, Any] | None = None,
        job_name: str | None = None,
        deferrable: bool | None = None,
        wait_for_completion: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.graph_uri = graph_uri
        self.model_uri = model_uri
        self.day = day
        self.epochs = epochs
        self.azureml = (
            AzureMLConfig.model_validate(azureml).model_dump() if azureml is not None else None
        )
        self.job_name = job_name
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion

    def config(self) -> AzureMLConfig:
        if self.azureml is not None:
            return AzureMLConfig.model_validate(self.azureml)
        return load_retrain_config().azureml

    def train_config(self, epochs: int | None) -> dict[str, Any] | None:
        """The pipeline's training config (a file on this worker) with the epochs override."""
        from recsys.orchestration.train_step import read_train_config

        data = read_train_config(load_retrain_config().train_config)
        if epochs is not None:
            data["epochs"] = epochs
        return data or None

    @cached_property
    def hook(self) -> AzureMLHook:
        return AzureMLHook(azureml_conn_id=self.config().conn_id)

    def build_job(self, run_id: str, try_number: int, epochs: int | None = None) -> Any:
        """The command job for this try (also used by tests to inspect what is submitted);
        ``epochs`` is the run's param, which the operator's own ``epochs`` overrides."""
        day = day_of(self.day)
        name = self.job_name or azureml_job_name(day, run_id, try_number)
        if self.epochs is not None:
            epochs = self.epochs
        return build_command_job(
            self.config(),
            graph_uri=self.graph_uri,
            model_uri=self.model_uri,
            name=name,
            day=day,
            train_config=self.train_config(epochs),
            tags={"airflow.run_id": run_id, "airflow.task_id": self.task_id},
        )

    def execute(self, context: Context) -> dict[str, Any]:
        cfg = self.config()
        ti = context["ti"]
        params = context.get("params") or {}
        job = self.build_job(context["run_id"], ti.try_number, params.get("epochs"))
        submitted = self.hook.submit(job)
        self.job_name = submitted.name
        self.log.info(
            "Submitted Azure ML job %s (compute %s): %s",
            self.job_name,
            cfg.compute,
            submitted.studio_url or "no studio URL",
        )
        ti.xcom_push(key=JOB_NAME_KEY, value=self.job_name)
        if submitted.studio_url:
            ti.xcom_push(key=AzureMLJobLink.key, value=submitted.studio_url)
        if not self.wait_for_completion:
            return self._result(self.job_name, "Submitted")
        deferrable = cfg.deferrable if self.deferrable is None else self.deferrable
        if deferrable:
            status = self.hook.get_status(self.job_name)
            if status in TERMINAL:  # finished (or refused) before we could defer
                return self._finish(self.job_name, status)
            self.defer(
                trigger=AzureMLJobTrigger(
                    job_name=self.job_name,
                    end_time=time.time() + cfg.timeout_s,
                    azureml_conn_id=cfg.conn_id,
                    poll_interval=cfg.poll_interval_s,
                ),
                method_name="execute_complete",
                # a backstop only: the trigger's own end time comes first and cancels the job
                timeout=dt.timedelta(seconds=cfg.timeout_s + cfg.poll_interval_s + CANCEL_GRACE_S),
            )
        return self.poll(self.job_name, cfg.poll_interval_s, cfg.timeout_s)

    def poll(self, job_name: str, poll_interval: float, timeout_s: float) -> dict[str, Any]:
        """Non-deferrable mode: poll from the worker; cancel the job when the wait times out."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.hook.get_status(job_name)
            if status in TERMINAL:
                return self._finish(job_name, status)
            if time.monotonic() >= deadline:
                self.hook.cancel(job_name)
                raise AzureMLJobFailed(
                    f"Azure ML job {job_name} still {status} after {timeout_s}s: cancelled"
                )
            self.log.info("Azure ML job %s is %s", job_name, status)
            time.sleep(poll_interval)

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """Resume after the deferral; when Airflow resumes only to fail the task (the deferral
        timed out or the trigger crashed), cancel the job first: no ``on_kill`` comes then."""
        if next_method == TRIGGER_FAIL_REPR:
            job_name = self.job_name or context["ti"].xcom_pull(
                task_ids=self.task_id, key=JOB_NAME_KEY
            )
            if job_name:
                self.log.info("Wait ended without the job: cancelling Azure ML job %s", job_name)
                self.hook.cancel(str(job_name))
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired."""
        job_name = str(event.get("job_name") or self.job_name)
        self.job_name = job_name
        if event.get("status") != "success":
            raise AzureMLJobFailed(str(event.get("message") or f"Azure ML job {job_name} failed"))
        return self._finish(job_name, str(event.get("job_status")))

    def _finish(self, job_name: str, status: str) -> dict[str, Any]:
        if status not in SUCCEEDED:
            raise AzureMLJobFailed(f"Azure ML job {job_name} ended {status}")
        self.log.info("Azure ML job %s completed; model at %s", job_name, self.model_uri)
        return self._result(job_name, status)

    def _result(self, job_name: str, status: str) -> dict[str, Any]:
        return {"job_name": job_name, "job_status": status, "model": self.model_uri}

    def on_kill(self) -> None:
        """A killed or timed-out task must not leave GPUs running: cancel the job."""
        if self.job_name:
            self.log.info("Cancelling Azure ML job %s", self.job_name)
            self.hook.cancel(self.job_name)
