"""
# recsys_retrain: the daily retrain

Waits for the day's events partition, then runs every gate in order; a failed
gate stops the run and the model in production keeps serving.

`plan` (the run's paths; fails, naming the reason, when the day has nothing to
process) -> `wait_for_events` (deferrable) -> `validate` (gate 1, data) ->
`build_graph` (gate 2, graph; the holdout grows back until it holds enough users
to decide; both data steps on the config's `engine`: `local`, or `spark` in
local mode or as an Azure Databricks run, deferrable) -> `train_local` |
`train_azureml` -> `evaluate_gate` (gate 3: the candidate, popularity and the
production bundle on the same holdout users, with paired bootstrap intervals:
beats popularity, not worse than production beyond the margin; **undecided**
when the holdout cannot tell, which follows the gate's `undecided_policy` and
shows as a skipped task when nothing deploys) -> `export` (gate 4: ONNX parity
and latency) -> `deploy` (gate 5: publish, smoke test of the live endpoint,
automatic rollback). Each gate writes `report.json` under
`<lake>/reports/<gate>/dt=<day>`, and the tasks read it.

Every artifact path derives from the run's day (`plan` logs them all), so a
rerun overwrites its own artifacts and a backfill rebuilds history with
point-in-time graphs. The DAG has no start date of its own: any day the lake
has events for can be run or backfilled (the pipeline config's `start_date`, if
set, is the earliest), and a day with nothing to process fails at `plan`.

## Trigger form
| param | meaning |
| --- | --- |
| `epochs` | training epochs; empty keeps the training config's value |
| `backend` | `local` (this machine's CPU/GPU) or `azureml` (GPU cluster, command job) |
| `deploy` | publish the bundle when every gate passed; off stops after export |
| `force_deploy` | deploy even if the model gate fails (**recorded** in the model report, logged) |
| `as_of` | process this day (`YYYY-MM-DD`) instead of the run's logical date |
| `dry_run` | wait for the data and run the data gate only; nothing else is built |

Configuration (lake, registry, gate files, data engine, Azure ML, live endpoint) is
read at run time from the file named by `RECSYS_RETRAIN_CONFIG`, and `RECSYS_LAKE` /
`RECSYS_REGISTRY`.

Backfill (both dates inclusive; add `--reprocess-behavior completed` to redo days already run):
`airflow backfill create --dag-id recsys_retrain --from-date 2026-11-25 --to-date 2026-11-27`;
one day by hand: `airflow dags test recsys_retrain 2026-11-25`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from recsys.orchestration import model_gate, tasks, train_step
from recsys.orchestration.cli_runner import gate_is_final
from recsys.orchestration.links import ModelReportLink, report_page
from recsys.orchestration.operators import AzureMLCommandJobOperator
from recsys.orchestration.sensors import LakePartitionSensor
from recsys.orchestration.spark_steps import DataStepOperator

GRAPH = Asset(name="recsys.graph_snapshot", uri="recsys://lake/graphs", group="recsys")
MODEL = Asset(name="recsys.model", uri="recsys://lake/models", group="recsys")
BUNDLE = Asset(name="recsys.bundle", uri="recsys://lake/bundles", group="recsys")

# I/O-bound steps may meet a transient storage or node failure: retry with backoff.
IO_RETRY: dict[str, Any] = {
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
}


def _lineage(outlet_events: Any, asset: Asset, info: dict[str, Any]) -> None:
    if outlet_events is not None:
        outlet_events[asset].extra = {
            k: v for k, v in info.items() if isinstance(v, str | int | float | bool)
        }


@dag(
    dag_id="recsys_retrain",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    # no start_date: Airflow creates no task instance for a run before its tasks' start date,
    # so `dags test` of an earlier day would "succeed" having run nothing. Without one every
    # day can be run; `plan` refuses, naming the reason, a day before the pipeline config's
    # start_date or outside the lake's events. Scheduling (catchup off) needs none.
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "training", "gates"],
    doc_md=__doc__,
    default_args={"owner": "recsys", "retries": 0},
    params={
        "epochs": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Training epochs",
            description="Empty: the training config's value.",
        ),
        "backend": Param("local", enum=["local", "azureml"], title="Training backend"),
        "deploy": Param(True, type="boolean", title="Deploy when every gate passes"),
        "force_deploy": Param(
            False,
            type="boolean",
            title="Force deploy despite the model gate",
            description="Recorded in the model report and the task log.",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Process this day instead",
            description="YYYY-MM-DD; empty: the run's logical date.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run: data gate only"),
    },
)
def recsys_retrain() -> None:
    @task(multiple_outputs=True)
    def plan(params: Any = None, dag_run: Any = None, logical_date: Any = None) -> dict[str, Any]:
        with gate_is_final():
            out = tasks.plan(logical_date, params.get("as_of"), run_after=dag_run.run_after)
            tasks.check_processable(dt.date.fromisoformat(out["day"]))
        return out

    paths: Any = plan()  # a dict of URIs at run time

    # how long and how often: the pipeline config's `sensor`, read when the task runs
    wait = LakePartitionSensor(
        task_id="wait_for_events", marker_uri=paths["events_marker"], deferrable=True
    )

    # the data steps run on the pipeline config's engine: local, or Spark (local mode in a
    # child process, or an Azure Databricks run waited for in the triggerer)
    checked = DataStepOperator(task_id="validate", step="validate", paths=paths)

    @task.short_circuit
    def proceed(params: Any = None) -> bool:
        return not params["dry_run"]

    graph = DataStepOperator(
        task_id="build_graph", step="build_graph", paths=paths, outlets=[GRAPH], **IO_RETRY
    )

    @task.branch
    def choose_backend(params: Any = None) -> str:
        return "train_azureml" if params["backend"] == "azureml" else "train_local"

    @task(outlets=[MODEL], **IO_RETRY)
    def train_local(
        paths: dict[str, Any], params: Any = None, outlet_events: Any = None
    ) -> dict[str, Any]:
        with gate_is_final():
            out = train_step.train_local(paths, params.get("epochs"))
        _lineage(outlet_events, MODEL, out)
        return out

    train_azureml = AzureMLCommandJobOperator(
        task_id="train_azureml",
        graph_uri=paths["graph"],
        model_uri=paths["model"],
        day=paths["day"],
        outlets=[MODEL],
        retries=1,
        retry_delay=dt.timedelta(minutes=5),
    )

    @task(trigger_rule="none_failed_min_one_success")
    def evaluate_gate(paths: dict[str, Any], params: Any = None, ti: Any = None) -> dict[str, Any]:
        try:
            with gate_is_final():
                return model_gate.evaluate_and_gate(
                    paths, force_deploy=bool(params["force_deploy"])
                )
        finally:
            ti.xcom_push(
                key=ModelReportLink.key, value=report_page(paths["model_report"], "report.html")
            )

    @task(outlets=[BUNDLE], **IO_RETRY)
    def export(paths: dict[str, Any], gate: Any, outlet_events: Any = None) -> dict[str, Any]:
        with gate_is_final():
            out = tasks.export(paths)
        _lineage(outlet_events, BUNDLE, out)
        return out

    @task
    def deploy(paths: dict[str, Any], bundle: Any, gate: Any, params: Any = None) -> dict[str, Any]:
        if not params["deploy"]:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                "deploy is off for this run: the bundle is built, not published"
            )
        return tasks.deploy(paths, bundle, gate)

    branch = choose_backend()
    local = train_local(paths)
    gate = evaluate_gate(paths)
    bundle = export(paths, gate)

    wait >> checked >> proceed() >> graph >> branch >> [local, train_azureml]
    [local, train_azureml] >> gate
    deploy(paths, bundle, gate)


recsys_retrain()
