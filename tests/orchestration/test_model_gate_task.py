"""The model-gate task, the CLI runner reading gate reports, and runs with nothing to process."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.artifacts import InputRef, manifest_sha256, write_artifact
from recsys.errors import GateFailed, GateUndecided, InputError
from recsys.evaluation.gate import CANDIDATE, POPULARITY, PRODUCTION
from recsys.evaluation.holdout import HoldoutScores
from recsys.orchestration import cli_runner, model_gate, tasks
from recsys.orchestration.cli_runner import gate_is_final
from recsys.orchestration.config import RetrainConfig
from recsys.serving import registry

DAY = dt.date(2026, 11, 27)
N = 300


def _artifact(uri: str, kind: str, **inputs: str) -> str:
    with write_artifact(uri, kind) as draft:
        Path(draft.path("x.json")).write_text("{}")
        draft.inputs = {k: InputRef(uri=v, sha256=manifest_sha256(v)) for k, v in inputs.items()}
        draft.config = {"version": "prod-v1"}
    return uri


def _ndcg(rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random(N) < rate, 1 / np.log2(rng.integers(2, 22, N)), 0.0)


def _fake_evaluation(cand: float, prod: float | None, new_users: int = 0) -> Any:
    """What ``recsys evaluate`` would give: per-user metrics of the three models."""

    def evaluate(paths_d: dict[str, Any], mode: str, production: str | None) -> Any:
        s = HoldoutScores(np.arange(N), np.array([f"u{i}" for i in range(N)]))
        s.add(CANDIDATE, {"ndcg@20": _ndcg(cand, 1)})
        s.add(POPULARITY, {"ndcg@20": _ndcg(0.1, 2)})
        if production is not None and prod is not None:
            values = _ndcg(prod, 3)
            values[:new_users] = np.nan
            s.add(PRODUCTION, {"ndcg@20": values})
        return s, {
            "holdout_days": 5,
            "holdout_users": N,
            "holdout_pairs": N + 20,
            "holdout_start": "2026-11-23",
            "holdout_target_met": False,
        }

    return evaluate


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Any]:
    cfg = RetrainConfig(lake=str(tmp_path / "lake"), registry=str(tmp_path / "registry"))
    paths = tasks.plan(DAY, None, cfg)
    _artifact(paths["graph"], "graph_snapshot")
    _artifact(paths["model"], "model")
    prod_model = _artifact(str(tmp_path / "lake/models/as_of=2026-11-26"), "model")
    bundle = _artifact(str(tmp_path / "lake/bundles/as_of=2026-11-26"), "bundle", model=prod_model)
    return {"cfg": cfg, "paths": paths, "bundle": bundle}


def _publish(run: dict[str, Any]) -> None:
    registry.publish(run["cfg"].resolved_registry(), run["bundle"], "prod-v1")


def _report(paths: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(Path(paths["model_report"], "report.json").read_text()))


def test_worse_than_production_is_refused_with_a_report(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(run)
    monkeypatch.setattr(model_gate, "evaluate", _fake_evaluation(0.3, 0.7, new_users=40))
    with pytest.raises(GateFailed, match="vs_production") as failed:
        model_gate.evaluate_and_gate(run["paths"], force_deploy=False, config=run["cfg"])
    assert not isinstance(failed.value, GateUndecided)
    assert failed.value.report == run["paths"]["model_report"]
    report = _report(run["paths"])
    assert report["gate"] == "model" and report["decision"] == "failed"
    assert report["details"]["deploy"] is False and report["details"]["forced"] is False
    assert report["details"]["production"] == run["bundle"]
    prod = report["details"]["comparisons"]["production"]
    assert prod["users"] == N - 40 and prod["left_out"] == 40  # new since production's snapshot
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["vs_production"]["status"] == "failed"
    assert checks["vs_production"]["interval"][1] < checks["vs_production"]["threshold"]
    assert "40 of 300" in checks["vs_production"]["note"]
    assert report["details"]["holdout"]["holdout_days"] == 5
    html = Path(run["paths"]["model_report"], "report.html").read_text()
    assert "vs_production" in html and "left out" in html and "FAILED" in html
    per_user = Path(run["paths"]["model_report"], "per_user.parquet")
    assert per_user.stat().st_size > 0


def test_production_trained_on_holdout_days_is_said(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Production's training reached into today's holdout: the report says the comparison
    leans its way."""
    graph = str(tmp_path / "lake/graphs/as_of=2026-11-26")
    with write_artifact(graph, "graph_snapshot") as draft:
        Path(draft.path("x.json")).write_text("{}")
        draft.extra = {"as_of": "2026-11-26", "holdout_start": "2026-11-26"}
    bundle = _artifact(str(tmp_path / "lake/bundles/b2"), "bundle", graph=graph)
    registry.publish(run["cfg"].resolved_registry(), bundle, "prod-v2")
    monkeypatch.setattr(model_gate, "evaluate", _fake_evaluation(0.5, 0.3))  # holdout from 11-23
    out = model_gate.evaluate_and_gate(run["paths"], config=run["cfg"])
    assert out["decision"] == "passed"
    check = next(c for c in _report(run["paths"])["checks"] if c["name"] == "vs_production")
    assert (
        "trained on data through 2026-11-25, inside this holdout (from 2026-11-23)"
        in (check["note"])
    )
    assert model_gate.production_train_end(run["bundle"]) is None  # its lineage does not say


def test_forced_deploy_is_recorded(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(run)
    monkeypatch.setattr(model_gate, "evaluate", _fake_evaluation(0.3, 0.7))
    out = model_gate.evaluate_and_gate(run["paths"], force_deploy=True, config=run["cfg"])
    assert out["decision"] == "failed" and out["forced"] is True and out["deploy"] is True
    report = _report(run["paths"])
    assert report["details"]["forced"] is True and report["details"]["force_deploy"] is True
    md = Path(run["paths"]["model_report"], "report.md").read_text()
    assert "deploy forced despite the gate's decision" in md


def test_undecided_keeps_production_and_deploys_the_first_model(
    run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_gate, "evaluate", _fake_evaluation(0.12, 0.12))
    # no production yet: the default policy deploys, saying the gate was undecided
    out = model_gate.evaluate_and_gate(run["paths"], config=run["cfg"])
    assert out["decision"] == "undecided" and out["deploy"] is True and out["forced"] is False
    assert "no model serves yet" in out["outcome"]
    # production serving: an undecided candidate does not replace it
    _publish(run)
    with pytest.raises(GateUndecided, match="model gate undecided"):
        model_gate.evaluate_and_gate(run["paths"], config=run["cfg"])
    assert _report(run["paths"])["details"]["outcome"].startswith("undecided; production keeps")
    # the policy that never deploys on undecided
    gate_cfg = Path(run["cfg"].resolved_lake()) / "gate.json"
    gate_cfg.write_text(json.dumps({"undecided_policy": "keep_production"}))
    strict = run["cfg"].model_copy(
        update={
            "model_gate_config": str(gate_cfg),
            "registry": str(Path(gate_cfg).parent / "empty"),
        }
    )
    with pytest.raises(GateUndecided):
        model_gate.evaluate_and_gate(run["paths"], config=strict)


def test_cli_gate_failure_is_read_from_its_report(tmp_path: Path) -> None:
    """A refused gate in a child process: the task learns what failed from report.json."""
    from recsys.data.synth import SynthConfig, generate

    lake = tmp_path / "lake"
    generate(SynthConfig(users=60, items=20, days=2, end_date=DAY, seed=1), str(lake))
    cfg = tmp_path / "graph.json"
    cfg.write_text(json.dumps({"gate": {"min_edges": 10**9}}))
    report = str(tmp_path / "graph-report")
    build = ["build-graph", "--lake", str(lake), "--as-of", DAY.isoformat()]
    build += ["--config", str(cfg), "--report", report]
    with pytest.raises(GateFailed) as failed:
        cli_runner.run_cli(
            build,
            report=report,
        )
    assert failed.value.gate == "graph" and failed.value.report == report
    assert failed.value.failures == [
        f"min_edges: >= 1e+09 (observed {failed.value.failures[0].split('observed ')[1][:-1]})"
    ]
    # exit 1 without a report: named as such, never a guess from the console; a report left
    # there by an earlier run is not taken for this run's
    from recsys.reports import GateReport, write_gate_report

    stale = str(tmp_path / "elsewhere")
    write_gate_report(stale, GateReport.of("graph", []))
    with pytest.raises(GateFailed, match="wrote no gate report"):
        cli_runner.run_cli(
            build,
            report=stale,
        )


def test_a_run_with_nothing_to_process_fails_naming_the_reason(tmp_path: Path) -> None:
    from recsys.data.synth import SynthConfig, generate

    lake = tmp_path / "lake"
    cfg = RetrainConfig(lake=str(lake), registry=str(tmp_path / "registry"))
    with pytest.raises(InputError, match="no events partition at all"):
        tasks.check_processable(DAY, cfg)
    generate(SynthConfig(users=30, items=10, days=3, end_date=DAY, seed=1), str(lake))
    tasks.check_processable(DAY, cfg)
    tasks.check_processable(DAY + dt.timedelta(days=1), cfg)  # tomorrow: the sensor waits
    with pytest.raises(InputError, match="before the lake's first events partition"):
        tasks.check_processable(DAY - dt.timedelta(days=3), cfg)
    gap = DAY - dt.timedelta(days=1)
    import shutil

    shutil.rmtree(lake / "events" / f"dt={gap.isoformat()}")
    with pytest.raises(InputError, match="no partition for 2026-11-26 although later days"):
        tasks.check_processable(gap, cfg)
    late = cfg.model_copy(update={"start_date": DAY})
    with pytest.raises(InputError, match="before the pipeline's start_date 2026-11-27"):
        tasks.check_processable(DAY - dt.timedelta(days=2), late)


def test_in_airflow_undecided_skips_and_refused_fails() -> None:
    """An undecided gate that deploys nothing skips its task (and so export and deploy); a
    refused gate or bad input fails it without retries."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    with (
        pytest.raises(AirflowSkipException, match="model gate undecided"),
        gate_is_final(),
    ):
        raise GateUndecided("model", ["vs_production: ..."], "report")
    with pytest.raises(AirflowFailException, match="model gate failed"), gate_is_final():
        raise GateFailed("model", ["beats_popularity: ..."], "report")
    with pytest.raises(AirflowFailException, match="before the lake"), gate_is_final():
        raise InputError("2010-06-01: before the lake's first events partition")
