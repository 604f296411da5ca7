"""The retrain DAG with ``engine = spark`` (local mode) through every gate to a served bundle.

The data gate and the graph build run as ``recsys ... --engine spark`` child processes
(PySpark local mode, ``local[2]``); training, the model gate, export and deploy follow on
the Spark-built snapshot as on any other, and a live server answers from the deployed
bundle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from airflow_sandbox import dag_states

from recsys.artifacts import read_manifest
from recsys.reports import read_gate_report
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 27)
pytestmark = pytest.mark.slow


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def test_spark_engine_dag_deploys_a_served_bundle(
    tmp_path: Path, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    lake, registry = tmp_path / "lake", tmp_path / "registry"
    synth = f"synth --out {lake} --users 300 --items 80 --days 8 --end-date {DAY} --seed 3"
    subprocess.run([sys.executable, "-m", "recsys.cli", *synth.split()], check=True)
    train = tmp_path / "train.json"
    train.write_text(
        json.dumps(
            {
                "epochs": 3,
                "embedding_dim": 16,
                "eval_every": 3,
                "progress": False,
                "tracking": {"enabled": False},
            }
        )
    )
    port = free_port()
    cfg = tmp_path / "retrain.json"
    cfg.write_text(
        json.dumps(
            {
                "lake": str(lake),
                "registry": str(registry),
                "train_config": str(train),
                "event_log": str(tmp_path / "events.jsonl"),
                "engine": "spark",
                "spark": {"cluster": "local", "master": "local[2]"},
                "deploy": {"serve_url": f"http://127.0.0.1:{port}", "readiness_timeout_s": 60},
            }
        )
    )
    monkeypatch.setenv("RECSYS_RETRAIN_CONFIG", str(cfg))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys.cli",
            "serve",
            "--registry",
            str(registry),
            "--port",
            str(port),
            "--event-log",
            str(tmp_path / "events.jsonl"),
            "--reload-interval",
            "0.2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RECSYS_API_KEY": "spark-e2e"},
    )
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        dag = bag.dags["recsys_retrain"]
        run = dag.test(logical_date=dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC))
        states = dag_states(dag, run.run_id)
        expected = {t: "success" for t in dag.task_ids}
        expected["train_azureml"] = "skipped"
        assert states == expected

        graph = lake / "graphs" / f"as_of={DAY}"
        assert read_manifest(str(graph)).extra["engine"] == "spark"
        for gate in ("validation", "graph", "model", "export"):
            report = read_gate_report(str(lake / f"reports/{gate}/dt={DAY}"))
            assert report.decision == "passed", (gate, [c.line() for c in report.failed])
        production = json.loads((registry / "production.json").read_text())["current"]
        from recsys.graph.snapshot import load_id_maps

        users, _ = load_id_maps(str(graph))
        deadline = time.monotonic() + 30
        reply: dict[str, Any] = {}
        while time.monotonic() < deadline:
            reply = _get(f"http://127.0.0.1:{port}/v1/recommendations/{users[-1]}")
            if reply["model_version"] == production["version"]:
                break
            time.sleep(0.2)
        assert reply["model_version"] == production["version"] and reply["items"]
    finally:
        server.terminate()
        server.wait(10)
