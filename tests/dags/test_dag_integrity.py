"""Every DAG imports cleanly, without a database query or a connection lookup at parse time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"recsys_retrain", "recsys_events_compaction"}
GATES = {"validate", "evaluate_gate", "deploy"}
IO_TASKS = {"build_graph", "train_local", "export"}


@pytest.fixture(scope="module")
def bag_and_spies() -> Iterator[tuple[Any, list[str]]]:
    """Parse dags/ while any SQL statement or connection/variable lookup is recorded."""
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable
    from sqlalchemy import event

    calls: list[str] = []

    def on_sql(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        calls.append(f"SQL: {statement[:80]}")

    def forbidden(name: str) -> Any:
        def _f(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} at parse time")

        return _f

    engine = settings.engine
    assert engine is not None  # else the SQL spy below would see nothing
    event.listen(engine, "before_cursor_execute", on_sql)
    mp = pytest.MonkeyPatch()
    mp.setattr(BaseHook, "get_connection", classmethod(forbidden("BaseHook.get_connection")))
    mp.setattr(Connection, "get", classmethod(forbidden("Connection.get")))
    mp.setattr(Variable, "get", staticmethod(forbidden("Variable.get")))
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        mp.undo()
        event.remove(engine, "before_cursor_execute", on_sql)
    yield bag, calls


def test_dags_import_without_errors_or_parse_time_io(bag_and_spies: tuple[Any, list[str]]) -> None:
    bag, calls = bag_and_spies
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED
    assert calls == []


def _acyclic(dag: Any) -> bool:
    seen: dict[str, int] = {}

    def visit(tid: str) -> bool:
        if seen.get(tid) == 1:
            return False
        if seen.get(tid) == 2:
            return True
        seen[tid] = 1
        ok = all(visit(d) for d in dag.get_task(tid).downstream_task_ids)
        seen[tid] = 2
        return ok

    return all(visit(t) for t in dag.task_ids)


def test_tags_retries_schedule_and_no_cycles(bag_and_spies: tuple[Any, list[str]]) -> None:
    bag, _ = bag_and_spies
    for dag in bag.dags.values():
        assert dag.tags and "recsys" in dag.tags, dag.dag_id
        assert dag.catchup is False and dag.doc_md
        assert _acyclic(dag), dag.dag_id
        for t in dag.tasks:
            assert isinstance(t.retries, int), (dag.dag_id, t.task_id)
    retrain = bag.dags["recsys_retrain"]
    for tid in GATES:
        assert retrain.get_task(tid).retries == 0, tid  # a refused gate is final
    for tid in IO_TASKS:
        t = retrain.get_task(tid)
        assert t.retries >= 1 and t.retry_exponential_backoff, tid
    assert bag.dags["recsys_events_compaction"].get_task("compact").retries >= 1
    # data intervals: the run starting at midnight has the day that just ended as logical date
    from airflow.sdk import CronDataIntervalTimetable

    assert isinstance(retrain.timetable, CronDataIntervalTimetable)
    assert retrain.timetable.expression == "0 0 * * *"


def test_gate_order_and_params(bag_and_spies: tuple[Any, list[str]]) -> None:
    dag = bag_and_spies[0].dags["recsys_retrain"]
    chain = ["plan", "wait_for_events", "validate", "proceed", "build_graph", "choose_backend"]
    for up, down in itertools.pairwise(chain):
        assert down in dag.get_task(up).downstream_task_ids, (up, down)
    assert {"train_local", "train_azureml"} <= dag.get_task("choose_backend").downstream_task_ids
    for train in ("train_local", "train_azureml"):
        assert "evaluate_gate" in dag.get_task(train).downstream_task_ids
    assert "export" in dag.get_task("evaluate_gate").downstream_task_ids
    assert "deploy" in dag.get_task("export").downstream_task_ids
    assert dag.get_task("evaluate_gate").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("wait_for_events").deferrable
    params = dag.params
    for name in ("epochs", "backend", "deploy", "force_deploy", "as_of", "dry_run"):
        assert name in params and f"`{name}`" in dag.doc_md, name
    assert params.get_param("backend").schema["enum"] == ["local", "azureml"]
    assert {a.name for t in dag.tasks for a in t.outlets} == {
        "recsys.graph_snapshot",
        "recsys.model",
        "recsys.bundle",
    }


def test_plugin_registers_report_links() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "recsys_plugin", ROOT / "plugins" / "recsys_plugin.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {link.name for link in module.RecsysPlugin.global_operator_extra_links}
    assert names == {"Validation report", "Model report"}
    assert {link.name for link in module.RecsysPlugin.operator_extra_links} == {"Azure ML job"}
