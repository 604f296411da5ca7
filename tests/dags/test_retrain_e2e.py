"""The real retrain DAG, run with ``dag.test()`` on a small synthetic lake.

One module-scoped Airflow metadata DB (SQLite, migrated once) and one lake;
the scenarios run in order: a good day through every gate to a deployed
bundle answered over HTTP by a real server; a rerun of the same day
(graph and model overwritten in place, the new model's bundle in a folder of
its own beside the served one, and a rollback to the first); two backfill
days (point-in-time snapshots); an export-gate refusal; a corrupted day that
stops at the validation gate; and events posted to the server, one by a
brand-new user, reaching the lake through the compaction DAG and passing the
data gate.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_sandbox import dag_states

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 27)
API_KEY = "e2e-key"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, airflow_db: None) -> Iterator[dict[str, Any]]:
    """Migrated Airflow DB, a synthetic lake, the pipeline config and a live server."""
    base = tmp_path_factory.mktemp("e2e")
    lake, registry = base / "lake", base / "registry"
    synth = f"synth --out {lake} --users 300 --items 80 --days 8 --end-date {DAY} --seed 3"
    subprocess.run([sys.executable, "-m", "recsys.cli", *synth.split()], check=True)
    port = free_port()
    train_cfg = base / "train.json"
    train_cfg.write_text(
        json.dumps(
            {
                "epochs": 5,
                "embedding_dim": 16,
                "eval_every": 5,
                "progress": False,
                "tracking": {"enabled": False},
            }
        )
    )
    cfg = base / "retrain.json"
    cfg.write_text(
        json.dumps(
            {
                "lake": str(lake),
                "registry": str(registry),
                "train_config": str(train_cfg),
                "event_log": str(base / "events.jsonl"),
                "deploy": {"serve_url": f"http://127.0.0.1:{port}", "readiness_timeout_s": 60},
            }
        )
    )
    os.environ["RECSYS_RETRAIN_CONFIG"] = str(cfg)
    serve = f"serve --registry {registry} --port {port} --event-log {base / 'events.jsonl'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "recsys.cli", *serve.split(), "--reload-interval", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RECSYS_API_KEY": API_KEY},
    )
    try:
        yield {"lake": lake, "registry": registry, "url": f"http://127.0.0.1:{port}", "base": base}
    finally:
        server.terminate()
        server.wait(10)
        os.environ.pop("RECSYS_RETRAIN_CONFIG", None)


@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["recsys_retrain"]


def _run(dag: Any, day: dt.date, **conf: Any) -> dict[str, str]:
    """Run the DAG for ``day``; the state of every task."""
    dr = dag.test(
        logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
        run_conf=conf or None,
    )
    return dag_states(dag, dr.run_id)


def _manifest(uri: Path) -> str:
    return (uri / "manifest.json").read_text()


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def _xcom(dag: Any, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel)
            .where(
                XComModel.dag_id == dag.dag_id, XComModel.task_id == task_id, XComModel.key == key
            )
            .order_by(XComModel.timestamp.desc())
        ).first()
        assert row is not None, (task_id, key)
        value = row.value
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:  # a plain string
            return value.decode() if isinstance(value, bytes) else value
    return value


ARTIFACTS = ("graphs/as_of={d}", "models/as_of={d}")


def _artifacts(env: dict[str, Any], bundle: dict[str, Any]) -> dict[str, str]:
    """Manifests of the day's graph and model, and of the run's (versioned) bundle."""
    out = {a: _manifest(env["lake"] / a.format(d=DAY)) for a in ARTIFACTS}
    return {**out, "bundle": _manifest(Path(bundle["bundle"]))}


def _wait_for_version(url: str, user: str, version: str, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    served = None
    while time.monotonic() < deadline:
        served = _get(f"{url}/v1/recommendations/{user}")["model_version"]
        if served == version:
            return
        time.sleep(0.2)
    raise AssertionError(f"server still serves {served}, not {version}")


def test_good_day_goes_through_every_gate_to_a_served_bundle(env: dict[str, Any], dag: Any) -> None:
    states = _run(dag, DAY)
    expected = {t: "success" for t in dag.task_ids}
    expected["train_azureml"] = "skipped"
    assert states == expected
    bundle = _xcom(dag, "export")
    entry = json.loads((env["registry"] / "production.json").read_text())["current"]
    assert entry["version"] == bundle["version"]
    deployed = _xcom(dag, "deploy")
    assert deployed["smoke"] == "passed" and deployed["version"] == bundle["version"]
    record = json.loads((env["lake"] / f"reports/deploy/dt={DAY}/deployment.json").read_text())
    assert record["version"] == bundle["version"] and record["model_gate_forced"] is False
    # a real HTTP query to the live server answers from that bundle's model version
    user = _xcom(dag, "plan")  # any graph user will do; the smoke test used the first one
    from recsys.graph.snapshot import load_id_maps

    users, _ = load_id_maps(user["graph"])
    reply = _get(f"{env['url']}/v1/recommendations/{users[-1]}")
    assert reply["model_version"] == bundle["version"] and reply["items"]
    assert _xcom(dag, "validate", "recsys_validation_report_url").startswith("file://")
    # every gate wrote its report.json, and the tasks read them
    from recsys.reports import read_gate_report

    reports = {
        g: read_gate_report(str(env["lake"] / f"reports/{g}/dt={DAY}"))
        for g in ("validation", "graph", "model", "export")
    }
    assert {g: r.decision for g, r in reports.items() if g != "model"} == {
        "validation": "passed",
        "graph": "passed",
        "export": "passed",
    }
    model = reports["model"]
    assert model.decision == "passed" and _xcom(dag, "evaluate_gate")["decision"] == "passed"
    assert model.details["production"] is None  # nothing served before this run
    assert model.details["holdout"]["holdout_users"] == model.counts["holdout_users"] > 0
    assert _xcom(dag, "evaluate_gate", "recsys_model_report_url").endswith("report.html")
    assert Path(bundle["bundle"]) == env["lake"] / "bundles" / bundle["version"]
    env["first"] = _artifacts(env, bundle)
    env["first_bundle"], env["user"] = bundle, str(users[-1])


def test_rerun_of_the_same_day_overwrites_in_place(env: dict[str, Any], dag: Any) -> None:
    """Graph and model are overwritten; a new model's bundle gets a folder of its own."""
    from recsys.artifacts import manifest_sha256, verify_artifact
    from recsys.orchestration import tasks, train_step
    from recsys.serving import registry

    assert "first" in env, "needs the good-day run"
    first = env["first_bundle"]
    states = _run(dag, DAY, deploy=False)
    assert states["export"] == "success" and states["deploy"] == "skipped"
    # the champion (the first run's bundle, in production) was scored on the same users
    from recsys.reports import read_gate_report

    gate = read_gate_report(str(env["lake"] / f"reports/model/dt={DAY}"))
    assert gate.details["production"] == first["bundle"]
    compared = gate.details["comparisons"]["production"]
    assert compared["users"] == gate.counts["holdout_users"] and compared["left_out"] == 0
    vs_prod = next(c for c in gate.checks if c.name == "vs_production")
    # the same model, through torch (candidate) and its ONNX fold-in (production): ties apart,
    # the same lists
    assert vs_prod.status == "passed" and vs_prod.value is not None and abs(vs_prod.value) < 0.01
    second = _xcom(dag, "export")
    env["again"] = _artifacts(env, second)
    # same paths, nothing duplicated, no staging left behind
    for kind in ("graphs", "models"):
        assert sorted(p.name for p in (env["lake"] / kind).iterdir()) == [f"as_of={DAY}"]
    # the input side is fully deterministic: same events, same graph snapshot
    assert env["again"]["graphs/as_of={d}"] == env["first"]["graphs/as_of={d}"]
    # training is reproducible on CPU: the same model, so the same version, and its bundle
    # folder is kept as it was (test_rerun_gives_equal_model_and_bundle_manifests)
    assert second["version"] == first["version"]
    bundles = sorted(p.name for p in (env["lake"] / "bundles").iterdir())
    assert bundles == [first["version"]]
    # a different model (one more epoch, as the trigger form's override would give) gets a
    # bundle folder of its own beside the served one
    paths = _xcom(dag, "plan")
    train_step.train_local(paths, epochs=6)
    second = tasks.export(paths)
    assert second["version"] != first["version"]
    bundles = sorted(p.name for p in (env["lake"] / "bundles").iterdir())
    assert bundles == sorted([first["version"], second["version"]])
    # the served bundle's folder is untouched: the registry's pin still verifies
    entry = registry.current(str(env["registry"]))
    assert entry is not None and entry.version == first["version"]
    assert entry.bundle_uri == first["bundle"]
    assert manifest_sha256(entry.bundle_uri) == entry.manifest_sha256
    verify_artifact(entry.bundle_uri)
    assert _manifest(Path(first["bundle"])) == env["first"]["bundle"]

    # deploy the second for real (smoke-tested on the live server), then roll back
    assert tasks.deploy(paths, second)["smoke"] == "passed"
    _wait_for_version(env["url"], env["user"], second["version"])
    back = registry.rollback(str(env["registry"]))
    assert back.version == first["version"] and back.bundle_uri == first["bundle"]
    _wait_for_version(env["url"], env["user"], first["version"])  # reloaded and verified


def test_rerun_gives_equal_model_and_bundle_manifests(env: dict[str, Any]) -> None:
    # training is seeded and deterministic on CPU, and no artifact records wall-clock time or
    # the MLflow run id: a rerun of the same day republishes identical files
    assert "again" in env, "needs the rerun"
    assert set(env["again"]) == set(env["first"]) == {*ARTIFACTS, "bundle"}
    for artifact, manifest in env["first"].items():
        assert env["again"][artifact] == manifest, artifact


def test_backfill_days_get_point_in_time_snapshots(env: dict[str, Any], dag: Any) -> None:
    """Two earlier days (graph only: training is marked done) next to the good day's snapshot."""
    days = [DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1)]
    for day in days:
        dag.test(
            logical_date=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
            mark_success_pattern=r"^(train_local|train_azureml|evaluate_gate|export|deploy)$",
        )
    snaps = [days[0], days[1], DAY]
    manifests = [
        json.loads(_manifest(env["lake"] / f"graphs/as_of={d.isoformat()}")) for d in snaps
    ]
    assert len({json.dumps(m["inputs"], sort_keys=True) for m in manifests}) == 3
    read = [m["counts"]["events_read"] for m in manifests]
    assert read[0] < read[1] < read[2]  # each day sees only the events up to its own date
    assert all(
        f"events/dt={(d + dt.timedelta(days=1)).isoformat()}" not in m["inputs"]
        for d, m in zip(snaps, manifests, strict=True)
    )


def test_export_gate_failure_stops_before_publishing(env: dict[str, Any]) -> None:
    """The export step of the DAG with an impossible latency budget: refused, nothing changes."""
    from recsys.errors import GateFailed
    from recsys.orchestration import tasks
    from recsys.orchestration.config import load_retrain_config

    strict = env["base"] / "export.json"
    strict.write_text(json.dumps({"latency_p99_ms": 1e-6}))
    cfg = load_retrain_config().model_copy(update={"export_config": str(strict)})
    paths = tasks.plan(DAY, None, cfg)
    bundles = env["lake"] / "bundles"
    before = {p.name: _manifest(p) for p in bundles.iterdir()}
    pointer_before = (env["registry"] / "production.json").read_bytes()
    # the day's model already has its bundle: the gate still runs (on a throw-away copy)
    with pytest.raises(GateFailed, match="latency"):
        tasks.export(paths, cfg)
    assert {p.name: _manifest(p) for p in bundles.iterdir()} == before
    assert (env["registry"] / "production.json").read_bytes() == pointer_before


def test_corrupted_partition_stops_at_the_validation_gate(
    env: dict[str, Any], dag: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from recsys.data.lake import read_partition, write_partition

    bad_day = DAY + dt.timedelta(days=1)
    lake = str(env["lake"])
    good = read_partition(lake, "events", DAY)
    types = pc.if_else(pc.equal(pa.array(range(good.num_rows)), 0), "teleport", good["event_type"])
    for table in ("users", "items"):
        write_partition(lake, table, bad_day, read_partition(lake, table, DAY))
    ts = pc.add(good["ts"], pa.scalar(dt.timedelta(days=1)))
    bad = good.set_column(good.schema.get_field_index("event_type"), "event_type", types)
    bad = bad.set_column(bad.schema.get_field_index("ts"), "ts", ts)
    write_partition(lake, "events", bad_day, bad)
    before = (
        (env["registry"] / "production.json").read_bytes()
        if (env["registry"] / "production.json").exists()
        else None
    )

    states = _run(dag, bad_day)
    assert states["validate"] == "failed"
    for downstream in ("build_graph", "train_local", "evaluate_gate", "export", "deploy"):
        assert states[downstream] in {"upstream_failed", "skipped"}, (downstream, states)
    out = capfd.readouterr()
    assert "validation gate failed" in out.out + out.err
    assert "teleport" in out.out + out.err or "event_type" in out.out + out.err
    d = bad_day.isoformat()
    assert (env["lake"] / "reports" / "validation" / f"dt={d}" / "manifest.json").exists()
    for written in (f"graphs/as_of={d}", f"models/as_of={d}", f"reports/model/dt={d}"):
        assert not (env["lake"] / written).exists(), written
    assert not list((env["lake"] / "bundles").glob(f"{bad_day:%Y%m%d}-*"))
    after = (
        (env["registry"] / "production.json").read_bytes()
        if (env["registry"] / "production.json").exists()
        else None
    )
    assert after == before  # production untouched: the last good bundle keeps serving


def test_served_events_reach_the_lake_through_compaction(env: dict[str, Any]) -> None:
    """Serving -> durable log -> compaction DAG -> the day's partition, once, even on rerun.

    One of the events comes from a user the lake has never seen: compaction adds
    them to the day's users snapshot, so the data gate passes even when it
    tolerates no unknown user at all.
    """
    from airflow.dag_processing.dagbag import DagBag

    from recsys.data.lake import read_partition
    from recsys.validation.config import ValidationConfig
    from recsys.validation.gate import run_gate

    lake = str(env["lake"])
    known = read_partition(lake, "events", DAY).slice(0, 1).to_pylist()[0]
    new_user = "served-only-user"
    assert new_user not in read_partition(lake, "users", DAY).column("user_id").to_pylist()
    ts = dt.datetime.combine(DAY, dt.time(23, 59), tzinfo=dt.UTC).isoformat()
    event_ids = []
    for user in (known["user_id"], new_user):
        body = json.dumps(
            {"user_id": user, "item_id": known["item_id"], "event_type": "purchase", "ts": ts}
        ).encode()
        req = urllib.request.Request(
            f"{env['url']}/v1/events",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            event_ids += json.loads(resp.read())["event_ids"]

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["recsys_events_compaction"]
    before = read_partition(lake, "events", DAY).num_rows
    users_before = read_partition(lake, "users", DAY).num_rows
    for _ in range(2):  # the rerun must not double the events, nor the new user
        dr = dag.test(logical_date=dt.datetime.combine(DAY, dt.time(), tzinfo=dt.UTC))
        assert str(dr.state) == "success"
        ids = read_partition(lake, "events", DAY).column("event_id").to_pylist()
        assert len(ids) == before + 2 and all(ids.count(e) == 1 for e in event_ids)
        users = read_partition(lake, "users", DAY)
        assert users.num_rows == users_before + 1
        assert users.column("user_id").to_pylist()[-1] == new_user

    strict = ValidationConfig(max_unknown_user_rate=0.0, data_docs=False)
    result = run_gate(lake, DAY, str(env["base"] / "revalidation"), strict)
    assert result.passed
