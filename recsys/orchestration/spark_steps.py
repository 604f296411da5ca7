"""The retrain DAG's data steps (the data gate, the graph build) on the configured engine.

``engine = local``: the step runs in the worker (pyarrow / pandas), as it always has.
``engine = spark`` with ``spark.cluster = local``: the step's ``recsys`` command line with
``--engine spark`` runs in a child process, PySpark in local mode.
``engine = spark`` with ``spark.cluster = databricks``: the same command line runs as an
Azure Databricks run, submitted by the Databricks provider's ``DatabricksSubmitRunOperator``
(``runs/submit``) in deferrable mode: the provider's ``DatabricksExecutionTrigger`` waits
in the triggerer, so a long build holds no worker slot; a killed task cancels the run
(the provider's ``on_kill``), and Databricks ends a run past its ``timeout_seconds``.

Why Databricks and not a Synapse Spark batch: the Azure provider's
``AzureSynapseRunSparkBatchOperator`` has no deferrable mode (it polls from the worker for
the whole run), while the Databricks provider's submit operator defers to a trigger; and
the Databricks SDK's models check the run's payload before it is sent
(:func:`recsys.orchestration.databricks_job.validate_submit_run`), as azure-ai-ml's do for
the training job.

Whatever the engine, the step's gate writes its ``report.json`` in the lake, and a refused
gate fails the task with that report's checks (never a retry: a gate that refused the data
would refuse again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import Context

from recsys.artifacts import manifest_sha256
from recsys.orchestration import tasks
from recsys.orchestration.cli_runner import clear_report, gate_is_final
from recsys.orchestration.config import RetrainConfig, load_retrain_config
from recsys.orchestration.databricks_job import STEPS, Step, build_submit_run, report_of
from recsys.orchestration.links import ValidationReportLink, report_page
from recsys.orchestration.paths import RunPaths, from_dict


class DataStepOperator(DatabricksSubmitRunOperator):
    """Run the data step ``step`` (``validate`` or ``build_graph``) of the run whose paths
    are ``paths`` (the ``plan`` task's output) on the pipeline config's engine (read when the
    task runs, never at parse time). Returns what the step's task body returns: the report
    (and the snapshot) with its manifest hash."""

    template_fields: Sequence[str] = (*DatabricksSubmitRunOperator.template_fields, "paths")

    def __init__(self, *, step: Step, paths: Any, **kwargs: Any) -> None:
        if step not in STEPS:
            raise ValueError(f"step {step!r}: expected one of {STEPS}")
        kwargs.setdefault("deferrable", True)
        super().__init__(**kwargs)
        self.step: Step = step
        self.paths = paths

    def _paths(self) -> RunPaths:
        return from_dict(dict(self.paths))

    def execute(self, context: Context) -> Any:
        cfg = load_retrain_config()
        p = self._paths()
        try:
            if cfg.engine == "spark" and cfg.spark.cluster == "databricks":
                return self._submit(context, cfg, p)
            with gate_is_final():
                body = tasks.validate if self.step == "validate" else tasks.build_graph
                out = body(dict(self.paths), config=cfg)
            self._lineage(context, out)
            return out
        finally:  # the report link helps most when the gate failed
            if self.step == "validate":
                context["ti"].xcom_push(
                    key=ValidationReportLink.key, value=report_page(p.validation_report)
                )

    def _submit(self, context: Context, cfg: RetrainConfig, p: RunPaths) -> Any:
        dbx = cfg.spark.databricks
        self.json = build_submit_run(
            dbx, self.step, p, cfg, run_id=context["run_id"], try_number=context["ti"].try_number
        )
        if self.databricks_conn_id != dbx.conn_id:
            self.__dict__.pop("_hook", None)  # a hook cached for another connection
        self.databricks_conn_id = dbx.conn_id
        self.polling_period_seconds = dbx.poll_interval_s
        self.deferrable = dbx.deferrable
        self.log.info(
            "Submitting %s to Azure Databricks (%s)",
            self.step,
            dbx.existing_cluster_id or "new job cluster",
        )
        # what is read back when the run fails must be this run's report, not an earlier try's
        clear_report(report_of(self.step, p))
        try:
            super().execute(context)  # deferrable: raises TaskDeferred unless already finished
        except Exception:
            self._raise_gate_failure(p)
            raise
        return self._finish(context, p)

    def _prepare_submit_json(self, context: Context) -> dict[str, Any]:
        # the step's command line is complete (build_submit_run): the provider would copy the
        # DAG's params (the pipeline's trigger form) into the wheel task's named_parameters,
        # which Databricks refuses beside parameters
        payload: dict[str, Any] = super()._prepare_submit_json(context)
        for task in payload.get("tasks", []):
            wheel = task.get("python_wheel_task")
            if isinstance(wheel, dict) and wheel.get("parameters"):
                wheel.pop("named_parameters", None)
        return payload

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        """Back from the trigger: the run's outcome, then the gate's (from its report)."""
        p = self._paths()
        try:
            super().execute_complete(context, event)
        except Exception:
            self._raise_gate_failure(p)
            raise
        return self._finish(context, p)

    def _raise_gate_failure(self, p: RunPaths) -> None:
        """A failed run whose gate wrote a refusing report fails as that gate (its checks),
        without retries; otherwise the run's own error stands."""
        from recsys.errors import InputError
        from recsys.reports import read_gate_report

        report = report_of(self.step, p)
        try:
            gate = read_gate_report(report)
        except InputError:
            return
        if not gate.passed:
            with gate_is_final():
                raise gate.error(report)

    def _finish(self, context: Context, p: RunPaths) -> dict[str, Any]:
        if self.step == "validate":
            out = {"report": p.validation_report, "sha256": manifest_sha256(p.validation_report)}
        else:
            out = {"graph": p.graph, "sha256": manifest_sha256(p.graph), "report": p.graph_report}
        self._lineage(context, out)
        return out

    def _lineage(self, context: Context, info: dict[str, Any]) -> None:
        events = context.get("outlet_events")
        if events is None:
            return
        for asset in self.outlets:
            events[asset].extra = {
                k: v for k, v in info.items() if isinstance(v, str | int | float | bool)
            }
