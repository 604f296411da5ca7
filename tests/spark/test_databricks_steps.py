"""engine = spark on Azure Databricks: the run's payload, checked by the Databricks SDK's
models, submitted by the Databricks provider's operator in deferrable mode (a fake hook
stands in for the workspace: no network), and the gate's report read back when it ends."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from recsys.errors import InputError
from recsys.orchestration.config import DatabricksJobConfig, RetrainConfig
from recsys.orchestration.databricks_job import build_submit_run, validate_submit_run
from recsys.orchestration.paths import as_dict, run_paths

DAY = dt.date(2026, 11, 27)
LAKE = "abfs://lake@shop.dfs.core.windows.net/recsys"


def _payload(**dbx: Any) -> dict[str, Any]:
    cfg = RetrainConfig(lake=LAKE, graph_config="/Volumes/main/recsys/config/graph.toml")
    p = run_paths(DAY, LAKE, "./registry")
    return build_submit_run(
        DatabricksJobConfig(**dbx),
        "build_graph",
        p,
        cfg,
        run_id="scheduled__2026-11-28",
        try_number=1,
    )


def test_payload_runs_the_cli_with_the_spark_engine_and_passes_the_sdk_models() -> None:
    payload = _payload()
    (task,) = payload["tasks"]
    wheel = task["python_wheel_task"]
    assert (wheel["package_name"], wheel["entry_point"]) == ("recsys", "recsys")
    args = wheel["parameters"]
    assert args[0] == "build-graph" and args[-2:] == ["--engine", "spark"]
    assert args[args.index("--lake") + 1] == LAKE
    assert args[args.index("--config") + 1] == "/Volumes/main/recsys/config/graph.toml"
    assert task["new_cluster"]["autoscale"] == {"min_workers": 2, "max_workers": 8}
    assert task["libraries"][0] == {"whl": DatabricksJobConfig().wheel}
    # a new try is a new run; the same try resubmitted is the same run (idempotency token)
    assert _payload()["idempotency_token"] == payload["idempotency_token"]
    assert len(payload["idempotency_token"]) <= 64
    on_cluster = _payload(existing_cluster_id="0101-abc")["tasks"][0]
    assert on_cluster["existing_cluster_id"] == "0101-abc" and "new_cluster" not in on_cluster


@pytest.mark.parametrize(
    "break_it, says",
    [
        (lambda p: p["tasks"][0].update(python_whl_task={}), "python_whl_task"),
        (lambda p: p["tasks"][0]["python_wheel_task"].pop("package_name"), "package_name"),
        (lambda p: p["tasks"][0]["new_cluster"].update(autoscale={"minimum": 2}), "autoscale"),
        (lambda p: p["tasks"][0].pop("task_key"), "task.task_key"),
        (lambda p: p.update(cluster="x"), "unknown field(s) ['cluster']"),
        (lambda p: p["tasks"][0].update(existing_cluster_id="0101-abc"), "exactly one of"),
    ],
)
def test_the_sdk_models_refuse_a_broken_payload(break_it: Any, says: str) -> None:
    payload = _payload()
    break_it(payload)
    with pytest.raises(InputError, match=None) as exc:
        validate_submit_run(payload)
    assert says in str(exc.value)


class _FakeHook:
    """What the provider's operator asks of a Databricks workspace."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit_run(self, payload: dict[str, Any]) -> int:
        self.submitted.append(payload)
        return 42

    def get_job_id(self, run_id: int) -> int:
        return 7

    def get_run_page_url(self, run_id: int) -> str:
        return f"https://adb-1.1.azuredatabricks.net/#job/7/run/{run_id}"

    def get_run(self, run_id: int) -> dict[str, Any]:
        return {"state": {"life_cycle_state": "RUNNING", "state_message": ""}}


class _TI:
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _event(result: str) -> dict[str, Any]:
    from airflow.providers.databricks.hooks.databricks import RunState

    return {
        "run_id": 42,
        "run_page_url": "https://adb/run/42",
        "errors": [],
        "run_state": RunState("TERMINATED", result, "").to_json(),
        "repair_run": False,
    }


def test_operator_defers_on_the_provider_trigger_and_reads_the_gate_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from recsys.errors import InputError
    from recsys.orchestration.spark_steps import DataStepOperator
    from recsys.reports import Check, GateReport, read_gate_report, write_gate_report

    lake = tmp_path / "lake"
    cfg = tmp_path / "retrain.json"
    cfg.write_text(
        json.dumps(
            {
                "lake": str(lake),
                "registry": str(tmp_path / "registry"),
                "engine": "spark",
                "spark": {
                    "cluster": "databricks",
                    "databricks": {"conn_id": "dbx", "poll_interval_s": 5},
                },
            }
        )
    )
    monkeypatch.setenv("RECSYS_RETRAIN_CONFIG", str(cfg))
    hook = _FakeHook()
    monkeypatch.setattr(DataStepOperator, "_get_hook", lambda self, caller: hook)
    paths = as_dict(run_paths(DAY, str(lake), str(tmp_path / "registry")))
    # the DAG's own params (the trigger form's) are the pipeline's, not the step's
    op = DataStepOperator(
        task_id="validate", step="validate", paths=paths, params={"deploy": True, "epochs": 3}
    )
    ti = _TI()
    context: Any = {"run_id": "manual__1", "ti": ti, "params": {}}
    # an earlier try's refusing report is cleared before the run: a run that fails before
    # its gate writes must not fail as that old refusal
    stale = Check.of("events.user_id.not_null", False, "not null", "1 of 1 rows")
    write_gate_report(paths["validation_report"], GateReport.of("validation", [stale]))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    with pytest.raises(InputError):
        read_gate_report(paths["validation_report"])
    trigger = deferred.value.trigger
    assert isinstance(trigger, DatabricksExecutionTrigger)
    assert (trigger.run_id, trigger.databricks_conn_id, trigger.polling_period_seconds) == (
        42,
        "dbx",
        5,
    )
    (sent,) = hook.submitted
    wheel = sent["tasks"][0]["python_wheel_task"]
    assert "named_parameters" not in wheel  # Databricks takes parameters or named_parameters
    args = wheel["parameters"]
    assert args[:2] == ["validate", "--lake"] and args[-2:] == ["--engine", "spark"]
    assert ti.xcom["run_page_url"].endswith("/run/42")
    assert ti.xcom["recsys_validation_report_url"].startswith("file://")

    # the run ended; the job's gate wrote its report in the lake: passed, then refused
    report = paths["validation_report"]
    ok = Check.of(
        "events.user_id.not_null",
        True,
        "not null",
        "0 of 10 rows",
        table="events",
        column="user_id",
    )
    write_gate_report(report, GateReport.of("validation", [ok], day=DAY))
    back = DataStepOperator(task_id="validate", step="validate", paths=paths)
    out = back.execute_complete(context, _event("SUCCESS"))
    assert out["report"] == report and len(out["sha256"]) == 64
    bad = ok.model_copy(update={"status": "failed", "observed": "3 of 10 rows"})
    write_gate_report(report, GateReport.of("validation", [bad], day=DAY))
    with pytest.raises(AirflowFailException, match=r"events.user_id: not null \(observed 3 of"):
        back.execute_complete(context, _event("FAILED"))
    # a run that failed without a gate's verdict fails with the run's own error
    import shutil

    shutil.rmtree(report)
    with pytest.raises(Exception, match="failed"):
        back.execute_complete(context, _event("FAILED"))
