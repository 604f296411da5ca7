"""A shop of the shape the model gate must be right on, through the real DAG.

A generated purchase log of about 10^5 purchases over three years (tens a day at the end,
most customers buying a handful of times: tests/dags/purchase_log.py), exported as a CSV
and brought in as README's "your own shop" says: ``recsys import events``, then the
``recsys_retrain`` DAG with the default graph settings (365-day window, the holdout grown to
400 users) and a small model (d=16, K=2, 6 epochs: about 20 s of training here). Days of
2014, long before the DAG's old default start date (2026-11-01), are backfilled; a day before
the lake's first purchase fails naming the reason; the last day deploys a model that beats
popularity on the holdout, without force_deploy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_sandbox import dag_states

from tests.dags.purchase_log import write_purchase_log

ROOT = Path(__file__).resolve().parents[2]
LAST = dt.date(2014, 1, 31)
pytestmark = pytest.mark.slow
TRAIN = {
    "epochs": 6,
    "embedding_dim": 16,
    "num_layers": 2,
    "batch_size": 1024,
    "eval_every": 10,
    "progress": False,
    "tracking": {"enabled": False},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, airflow_db: None) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("shop")
    log = write_purchase_log(base / "export", end=LAST)
    lake = base / "lake"
    cmd = [
        sys.executable,
        "-m",
        "recsys.cli",
        "import",
        "events",
        str(log.purchases),
        "--out",
        str(lake),
        "--user-col",
        "customer",
        "--item-col",
        "product",
        "--time-col",
        "ordered_at",
        "--items",
        str(log.products),
        "--items-id-col",
        "product",
        "--items-cols",
        "category=category",
    ]
    subprocess.run(cmd, check=True, capture_output=True, env=os.environ.copy())
    train = base / "train.json"
    train.write_text(json.dumps(TRAIN))
    cfg = base / "retrain.json"
    cfg.write_text(
        json.dumps(
            {"lake": str(lake), "registry": str(base / "registry"), "train_config": str(train)}
        )
    )
    previous = os.environ.get("RECSYS_RETRAIN_CONFIG")
    os.environ["RECSYS_RETRAIN_CONFIG"] = str(cfg)
    try:
        yield {"lake": lake, "registry": base / "registry", "log": log}
    finally:
        if previous is None:
            os.environ.pop("RECSYS_RETRAIN_CONFIG", None)
        else:
            os.environ["RECSYS_RETRAIN_CONFIG"] = previous


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["recsys_retrain"]


def _run(dag: Any, day: dt.date, **kw: Any) -> tuple[str, dict[str, str]]:
    dr = dag.test(logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC), **kw)
    return str(dr.state), dag_states(dag, dr.run_id)


def test_the_log_has_the_shape_of_a_small_real_shop(shop: dict[str, Any]) -> None:
    log = shop["log"]
    assert 90_000 <= log.rows <= 110_000 and (log.last_day - log.first_day).days + 1 == 1095
    assert 30 <= log.per_day_end <= 150  # tens a day at the end
    from recsys.data.lake import list_partitions

    assert len(list_partitions(str(shop["lake"]), "events")) == 1095


def test_backfill_of_three_historical_days_runs_all_three(shop: dict[str, Any], dag: Any) -> None:
    """Days of January 2014: before the DAG's old start date, they used to "succeed" in
    seconds having run nothing. Training and what follows are marked done: the days' data
    and graph gates run, and each day gets its point-in-time snapshot and reports."""
    days = [LAST - dt.timedelta(days=d) for d in (7, 6, 5)]
    heavy = r"^(train_local|train_azureml|evaluate_gate|export|deploy)$"
    for day in days:
        state, states = _run(dag, day, mark_success_pattern=heavy)
        assert state == "success", states
        for task in ("plan", "wait_for_events", "validate", "proceed", "build_graph"):
            assert states[task] == "success", (day, task, states)
        for report in ("validation", "graph"):
            assert (shop["lake"] / f"reports/{report}/dt={day}/report.json").is_file()
        assert (shop["lake"] / f"graphs/as_of={day}/manifest.json").is_file()
    # the scheduler's own backfill takes the same days: a dry run lists the runs it would make
    # (days already run count only when reprocessed, as here)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "backfill",
            "create",
            "--dag-id",
            "recsys_retrain",
            "--from-date",
            days[0].isoformat(),
            "--to-date",
            days[-1].isoformat(),
            "--dry-run",
            "--reprocess-behavior",
            "completed",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for day in days:
        assert day.isoformat() in out.stdout, out.stdout


def test_a_day_before_the_lake_fails_naming_the_reason(shop: dict[str, Any], dag: Any) -> None:
    state, states = _run(dag, dt.date(2010, 6, 1))
    assert state == "failed" and states["plan"] == "failed"
    assert all(
        s in {"upstream_failed", "skipped", "None"} for t, s in states.items() if t != "plan"
    ), states
    assert not (shop["lake"] / "graphs/as_of=2010-06-01").exists()


def test_the_last_day_deploys_a_model_that_beats_popularity(shop: dict[str, Any], dag: Any) -> None:
    state, states = _run(dag, LAST)
    assert state == "success", states
    expected = {t: "success" for t in dag.task_ids}
    expected["train_azureml"] = "skipped"
    assert states == expected
    from recsys.artifacts import read_manifest
    from recsys.reports import read_gate_report

    graph = read_manifest(str(shop["lake"] / f"graphs/as_of={LAST}"))
    assert graph.counts["holdout_users"] >= 400 and graph.extra["holdout_target_met"] is True
    assert 1 < graph.counts["holdout_days"] <= 28
    report = read_gate_report(str(shop["lake"] / f"reports/model/dt={LAST}"))
    assert report.decision == "passed" and report.details["forced"] is False
    beats = next(c for c in report.checks if c.name == "beats_popularity")
    assert beats.interval is not None and beats.interval[0] > 0
    assert report.details["comparisons"]["popularity"]["users"] == graph.counts["holdout_users"]
    entry = json.loads((shop["registry"] / "production.json").read_text())["current"]
    assert entry["version"].startswith(f"{LAST:%Y%m%d}-")
    record = json.loads((shop["lake"] / f"reports/deploy/dt={LAST}/deployment.json").read_text())
    assert record["model_gate_decision"] == "passed" and record["model_gate_forced"] is False
