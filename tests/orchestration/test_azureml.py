"""Azure ML: the command job (validated by azure-ai-ml), the trigger, the operator's waits.

The control plane cannot be reached from here: the operator and trigger run
against ``FakeMLClient``, a scripted stand-in for ``azure.ai.ml.MLClient``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from recsys.errors import InputError
from recsys.orchestration.azureml import AzureMLHook
from recsys.orchestration.azureml_job import build_command_job, datastore_uri, validate_job
from recsys.orchestration.config import AzureMLConfig
from recsys.orchestration.links import AzureMLJobLink
from recsys.orchestration.operators import AzureMLCommandJobOperator, AzureMLJobFailed
from recsys.orchestration.paths import run_paths
from recsys.orchestration.triggers import AzureMLJobTrigger, LakeMarkerTrigger

LAKE = "abfs://lake@recsysprod.dfs.core.windows.net"
DAY = dt.date(2026, 11, 27)
PATHS = run_paths(DAY, LAKE, f"{LAKE}/registry")
CFG = AzureMLConfig(
    image="recsysacr.azurecr.io/recsys-train:0.1.0",
    compute="gpu-a100",
    instance_count=2,
    process_count_per_instance=4,
    poll_interval_s=0.01,
    timeout_s=5,
)


STUDIO = "https://ml.azure.com/runs/{name}?wsid=/subscriptions/s/resourcegroups/rg/workspaces/w"


@dataclass
class FakeJob:
    name: str
    status: str
    studio_url: str | None = None


@dataclass
class FakeJobOperations:
    """``MLClient.jobs``: each ``get`` returns the next scripted status (the last one repeats)."""

    statuses: list[str | Exception]
    submitted: list[Any] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    gets: int = 0

    def create_or_update(self, job: Any) -> FakeJob:
        self.submitted.append(job)
        return FakeJob(name=job.name, status="NotStarted", studio_url=STUDIO.format(name=job.name))

    def get(self, name: str) -> FakeJob:
        if self.cancelled:
            return FakeJob(name=name, status="Canceled")
        item = self.statuses[min(self.gets, len(self.statuses) - 1)]
        self.gets += 1
        if isinstance(item, Exception):
            raise item
        return FakeJob(name=name, status=item)

    def begin_cancel(self, name: str) -> None:
        self.cancelled.append(name)


class FakeMLClient:
    """Stands in for ``azure.ai.ml.MLClient``: only the ``jobs`` operations the hook uses."""

    def __init__(self, *statuses: str | Exception) -> None:
        self.jobs = FakeJobOperations(list(statuses) or ["Completed"])


class FakeTI:
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _operator(client: FakeMLClient, **kw: Any) -> AzureMLCommandJobOperator:
    op = AzureMLCommandJobOperator(
        task_id="train_azureml",
        graph_uri=PATHS.graph,
        model_uri=PATHS.model,
        day=DAY.isoformat(),
        epochs=3,
        azureml=CFG,
        **kw,
    )
    op.hook = AzureMLHook(client=client)
    return op


def _context() -> dict[str, Any]:
    return {"ti": FakeTI(), "run_id": "scheduled__2026-11-27T00:00:00+00:00"}


def test_command_job_is_built_and_validated_by_azure_ai_ml() -> None:
    from azure.ai.ml import PyTorchDistribution
    from azure.ai.ml.entities import Environment

    job = build_command_job(
        CFG,
        graph_uri=PATHS.graph,
        model_uri=PATHS.model,
        name="recsys-train-x",
        day=DAY,
        train_config={"epochs": 3, "embedding_dim": 32},
    )
    assert job._validate().passed  # azure-ai-ml's own schema
    assert isinstance(job.environment, Environment) and job.environment.image == CFG.image
    assert job.compute == "gpu-a100"
    graph = job.inputs["graph"]
    assert (graph.type, graph.mode) == ("uri_folder", "ro_mount")
    assert graph.path == "azureml://datastores/lake/paths/graphs/as_of=2026-11-27/"
    # the models folder is the mount: the model, its staging sibling and its checkpoint are in it
    models = job.outputs["models"]
    assert (models.type, models.mode) == ("uri_folder", "rw_mount")
    assert models.path == "azureml://datastores/lake/paths/models/"
    assert isinstance(job.distribution, PyTorchDistribution)
    assert job.distribution.process_count_per_instance == 1  # one torchrun per node
    assert job.resources.instance_count == 2
    train = job.command.split(" && ", 1)[1]
    assert train.startswith(
        "torchrun --nnodes 2 --nproc_per_node 4 --node_rank $NODE_RANK "
        "--master_addr $MASTER_ADDR --master_port $MASTER_PORT --no-python recsys train "
    )
    assert "--graph ${{inputs.graph}}" in train
    assert "--out ${{outputs.models}}/as_of=2026-11-27 " in train
    assert "--checkpoint ${{outputs.models}}/as_of=2026-11-27.checkpoint " in train
    assert "${{outputs.model}}" not in train
    assert job.command.endswith(
        "--device cuda --checkpoint ${{outputs.models}}/as_of=2026-11-27"
        ".checkpoint --config recsys_train.json"
    )
    assert json.loads(job.environment_variables["RECSYS_TRAIN_CONFIG_JSON"])["epochs"] == 3
    rest = job._to_job()._to_rest_object()  # what jobs.create_or_update sends
    assert rest.properties.compute_id.endswith("gpu-a100")


def test_single_gpu_runs_without_torchrun_and_one_node_standalone() -> None:
    one = CFG.model_copy(update={"instance_count": 1, "process_count_per_instance": 1})
    job = build_command_job(one, graph_uri=PATHS.graph, model_uri=PATHS.model, name="n", day=DAY)
    assert job.command.startswith("recsys train ") and "torchrun" not in job.command
    four = one.model_copy(update={"process_count_per_instance": 4})
    job = build_command_job(four, graph_uri=PATHS.graph, model_uri=PATHS.model, name="n", day=DAY)
    assert job.command.startswith("torchrun --standalone --nproc_per_node 4 --no-python recsys ")


def test_registered_environment_and_invalid_jobs() -> None:
    cfg = CFG.model_copy(update={"image": None, "environment": "azureml:recsys-train:7"})
    job = build_command_job(cfg, graph_uri=PATHS.graph, model_uri=PATHS.model, name="n", day=DAY)
    assert job.environment == "azureml:recsys-train:7"
    job.inputs["graph"].type = "not_a_type"
    with pytest.raises(Exception, match=r"not_a_type|type"):
        validate_job(job)
    with pytest.raises(InputError, match="datastore"):
        datastore_uri("/tmp/lake/graphs/as_of=2026-11-27", CFG)
    local = CFG.model_copy(update={"datastore_root": "/mnt/lake"})
    assert datastore_uri("/mnt/lake/graphs/x", local) == "azureml://datastores/lake/paths/graphs/x/"


def test_trigger_serialises_and_round_trips() -> None:
    trig = AzureMLJobTrigger(
        job_name="recsys-train-1", end_time=1.8e9, azureml_conn_id="aml", poll_interval=7.0
    )
    classpath, kwargs = trig.serialize()
    module, name = classpath.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    marker = LakeMarkerTrigger(marker_uri=PATHS.events_marker, poll_interval=3)
    classpath, kwargs = marker.serialize()
    module, name = classpath.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (
        classpath,
        kwargs,
    )


async def _events(trigger: Any) -> list[Any]:
    return [e async for e in trigger.run()]


@pytest.mark.parametrize(
    ("statuses", "status", "job_status"),
    [
        (["Queued", "Running", "Completed"], "success", "Completed"),
        (["Running", "Failed"], "error", "Failed"),
        ([ConnectionError("reset"), "Running", "Completed"], "success", "Completed"),
        ([ConnectionError("down")] * 3, "error", None),
    ],
)
def test_trigger_polls_until_terminal(
    monkeypatch: pytest.MonkeyPatch, statuses: list[Any], status: str, job_status: str | None
) -> None:
    client = FakeMLClient(*statuses)
    monkeypatch.setattr(AzureMLJobTrigger, "_hook", lambda self: AzureMLHook(client=client))
    trig = AzureMLJobTrigger(
        job_name="j1", end_time=time.time() + 60, poll_interval=0.0, max_errors=3
    )
    events = asyncio.run(_events(trig))
    assert len(events) == 1
    assert events[0].payload["status"] == status
    assert events[0].payload["job_status"] == job_status


def test_marker_trigger_fires_when_partition_lands(tmp_path: Any) -> None:
    marker = tmp_path / "events" / "dt=2026-11-27" / "_SUCCESS"

    async def scenario() -> list[Any]:
        trig = LakeMarkerTrigger(marker_uri=str(marker), poll_interval=0.01)
        task = asyncio.ensure_future(_events(trig))
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting: no partition yet
        marker.parent.mkdir(parents=True)
        marker.write_bytes(b"")
        return await asyncio.wait_for(task, 5)

    events = asyncio.run(scenario())
    assert events[0].payload == {"status": "success", "marker_uri": str(marker)}


def test_operator_poll_mode_success_and_failure() -> None:
    client = FakeMLClient("Queued", "Running", "Completed")
    ctx = _context()
    out = _operator(client, deferrable=False).execute(ctx)
    assert out["job_status"] == "Completed" and out["model"] == PATHS.model
    job = client.jobs.submitted[0]
    assert job.name.startswith("recsys-train-20261127-")
    assert ctx["ti"].xcom["azureml_job_name"] == job.name
    assert ctx["ti"].xcom[AzureMLJobLink.key] == STUDIO.format(name=job.name)  # the task's link

    with pytest.raises(AzureMLJobFailed, match="Failed"):
        _operator(FakeMLClient("Running", "Failed"), deferrable=False).execute(_context())


def test_operator_poll_timeout_cancels_the_job() -> None:
    client = FakeMLClient("Running")
    op = _operator(client, deferrable=False)
    op.azureml = CFG.model_copy(update={"timeout_s": 1, "poll_interval_s": 0.2}).model_dump()
    with pytest.raises(AzureMLJobFailed, match="cancelled"):
        op.execute(_context())
    assert client.jobs.cancelled == [op.job_name]


def test_operator_defers_then_completes_and_on_kill_cancels() -> None:
    client = FakeMLClient("Queued")
    op = _operator(client, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(_context())
    trig = deferred.value.trigger
    assert isinstance(trig, AzureMLJobTrigger) and trig.job_name == op.job_name
    assert deferred.value.method_name == "execute_complete"
    # the trigger's own end time comes before the deferral's timeout, which is a backstop
    assert time.time() < trig.end_time <= time.time() + CFG.timeout_s
    assert deferred.value.timeout is not None
    assert deferred.value.timeout.total_seconds() > CFG.timeout_s

    # resumed in a fresh operator instance, as Airflow does
    resumed = _operator(FakeMLClient("Completed"))
    event = {"status": "success", "job_name": op.job_name, "job_status": "Completed"}
    assert resumed.execute_complete(_context(), event)["job_name"] == op.job_name
    with pytest.raises(AzureMLJobFailed, match="ended Failed"):
        resumed.execute_complete(
            _context(), {**event, "status": "error", "message": "ended Failed"}
        )

    op.on_kill()
    assert client.jobs.cancelled == [op.job_name]
    done = FakeMLClient("Completed")
    finished = _operator(done)
    finished.job_name = "already-done"
    finished.on_kill()  # a finished job is not cancelled
    assert done.jobs.cancelled == []


def test_partition_sensor_defers_until_the_marker_exists(tmp_path: Any) -> None:
    from recsys.orchestration.sensors import LakePartitionSensor

    marker = tmp_path / "events" / "dt=2026-11-27" / "_SUCCESS"
    sensor = LakePartitionSensor(task_id="wait", marker_uri=str(marker), poke_interval=5)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_context())
    assert isinstance(deferred.value.trigger, LakeMarkerTrigger)
    assert deferred.value.trigger.marker_uri == str(marker)
    marker.parent.mkdir(parents=True)
    marker.write_bytes(b"")
    assert sensor.execute(_context()) == str(marker)  # present: no trip to the triggerer


def test_deferral_timeout_cancels_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job still running when the deferred wait ends is cancelled by the trigger (Airflow
    calls no on_kill then), and the task fails saying so."""
    client = FakeMLClient("Queued", "Running")
    monkeypatch.setattr(AzureMLJobTrigger, "_hook", lambda self: AzureMLHook(client=client))
    trig = AzureMLJobTrigger(job_name="j-late", end_time=time.time() + 0.2, poll_interval=0.05)
    events = asyncio.run(_events(trig))
    assert client.jobs.cancelled == ["j-late"]
    assert len(events) == 1
    payload = events[0].payload
    assert (payload["status"], payload["job_status"]) == ("error", "Running")
    assert payload["message"].endswith("cancelled")
    with pytest.raises(AzureMLJobFailed, match="cancelled"):
        _operator(client).execute_complete(_context(), payload)


def test_killing_the_deferred_task_cancels_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeMLClient("Running")
    monkeypatch.setattr(AzureMLJobTrigger, "_hook", lambda self: AzureMLHook(client=client))
    trig = AzureMLJobTrigger(job_name="j-killed", end_time=time.time() + 60)
    asyncio.run(trig.on_kill())
    assert client.jobs.cancelled == ["j-killed"]


def test_deferral_timeout_seen_by_the_worker_cancels_the_job() -> None:
    """Should the triggerer miss the end time, Airflow resumes the task only to fail it:
    the operator cancels the job it names in XCom before failing."""
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR
    from airflow.sdk.exceptions import TaskDeferralTimeout

    client = FakeMLClient("Running")
    ctx = _context()
    ctx["ti"].xcom["azureml_job_name"] = "j-orphan"
    ctx["ti"].xcom_pull = lambda task_ids, key: ctx["ti"].xcom[key]
    resumed = _operator(client)
    with pytest.raises(TaskDeferralTimeout):
        resumed.resume_execution(TRIGGER_FAIL_REPR, {"error": "Trigger timeout"}, ctx)
    assert client.jobs.cancelled == ["j-orphan"]


def test_task_page_links_to_the_job_in_azure_ml_studio() -> None:
    assert any(
        isinstance(link, AzureMLJobLink) for link in _operator(FakeMLClient()).operator_extra_links
    )


def test_epochs_come_typed_from_the_run_params() -> None:
    client = FakeMLClient("Completed")
    op = AzureMLCommandJobOperator(
        task_id="train_azureml", graph_uri=PATHS.graph, model_uri=PATHS.model,
        day=DAY.isoformat(), azureml=CFG, deferrable=False,
    )  # fmt: skip
    op.hook = AzureMLHook(client=client)
    op.execute({**_context(), "params": {"epochs": 7}})
    job = client.jobs.submitted[0]
    assert json.loads(job.environment_variables["RECSYS_TRAIN_CONFIG_JSON"])["epochs"] == 7
    op.execute({**_context(), "params": {"epochs": None}})  # null: the config's own epochs
    assert "RECSYS_TRAIN_CONFIG_JSON" not in (client.jobs.submitted[1].environment_variables or {})


def test_partition_sensor_waits_as_its_config_says(tmp_path: Any) -> None:
    from recsys.orchestration.config import SensorConfig
    from recsys.orchestration.sensors import LakePartitionSensor

    marker = str(tmp_path / "events" / "dt=2026-11-27" / "_SUCCESS")
    cfg = SensorConfig(poke_interval_s=7, timeout_s=90)
    sensor = LakePartitionSensor(task_id="wait", marker_uri=marker, sensor=cfg)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(_context())
    assert deferred.value.trigger.poll_interval == 7
    assert deferred.value.timeout == dt.timedelta(seconds=90)


def test_a_run_without_logical_date_processes_the_day_before_it_ran() -> None:
    from recsys.orchestration.paths import day_of

    after = dt.datetime(2026, 11, 28, 0, 5, tzinfo=dt.UTC)
    assert day_of(None, run_after=after) == DAY
    assert day_of(dt.datetime(2026, 11, 27, tzinfo=dt.UTC), run_after=after) == DAY
    assert day_of(None, "2026-11-20", run_after=after) == dt.date(2026, 11, 20)


def test_a_typo_in_the_pipeline_config_is_refused(tmp_path: Any) -> None:
    from recsys.orchestration.config import load_retrain_config

    path = tmp_path / "retrain.json"
    path.write_text(json.dumps({"deploy": {"serve_ur1": "http://127.0.0.1:8000"}}))
    with pytest.raises(Exception, match="serve_ur1"):
        load_retrain_config(str(path))
