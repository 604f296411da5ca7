"""The model-gate task: worse than production is refused with a report, unless forced (recorded)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from recsys.artifacts import InputRef, manifest_sha256, write_artifact
from recsys.errors import GateFailed
from recsys.orchestration import tasks
from recsys.orchestration.config import RetrainConfig
from recsys.serving import registry

DAY = dt.date(2026, 11, 27)


def _artifact(uri: str, kind: str, **inputs: str) -> str:
    with write_artifact(uri, kind) as draft:
        Path(draft.path("x.json")).write_text("{}")
        draft.inputs = {k: InputRef(uri=v, sha256=manifest_sha256(v)) for k, v in inputs.items()}
        draft.config = {"version": "prod-v1"}
    return uri


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    cfg = RetrainConfig(lake=str(tmp_path / "lake"), registry=str(tmp_path / "registry"))
    paths = tasks.plan(DAY, None, cfg)
    _artifact(paths["graph"], "graph_snapshot")
    _artifact(paths["model"], "model")
    prod_model = _artifact(str(tmp_path / "lake/models/as_of=2026-11-26"), "model")
    bundle = _artifact(str(tmp_path / "lake/bundles/as_of=2026-11-26"), "bundle", model=prod_model)
    registry.publish(cfg.resolved_registry(), bundle, "prod-v1")
    scores = {paths["model"]: 0.20, prod_model: 0.30}

    def fake_metrics(model_uri: str) -> dict[str, Any]:  # what training recorded
        v = scores[model_uri]
        return {"gnn": {"ndcg@20": v, "recall@20": v}, "popularity": {"ndcg@20": 0.1}}

    monkeypatch.setattr(tasks, "recorded_metrics", fake_metrics)
    return {"cfg": cfg, "paths": paths}


def _report(paths: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(Path(paths["model_report"], "report.json").read_text()))


def test_worse_than_production_is_refused_with_a_report(run: dict[str, Any]) -> None:
    with pytest.raises(GateFailed, match="vs_production") as failed:
        tasks.evaluate_and_gate(run["paths"], force_deploy=False, config=run["cfg"])
    assert failed.value.report == run["paths"]["model_report"]
    report = _report(run["paths"])
    assert report["gate"]["passed"] is False and report["gate"]["forced"] is False
    assert report["production_metrics"]["ndcg@20"] == 0.30
    assert report["production_metrics_measured_on"] == "its own holdout"


def test_forced_deploy_is_recorded(run: dict[str, Any]) -> None:
    out = tasks.evaluate_and_gate(run["paths"], force_deploy=True, config=run["cfg"])
    assert out["passed"] is False and out["forced"] is True
    report = _report(run["paths"])
    assert report["gate"]["forced"] is True
    md = Path(run["paths"]["model_report"], "report.md").read_text()
    assert "deploy forced despite the failed gate" in md


def test_cli_gate_failure_is_rebuilt_from_its_stderr() -> None:
    lines = [
        "2026-11-28 08:41:29,151 INFO recsys.export.tables fold-in tables: 252 users",
        "export gate failed: 2 check(s)",
        "  - latency_p99_ms: 0.41 > budget 1e-06",
        "  - parity_topk_mismatches: 3 > 0",
        "  report: /lake/bundles/as_of=2026-11-27",
    ]
    err = tasks.gate_failure(lines, default="export")
    assert err.gate == "export" and err.report == "/lake/bundles/as_of=2026-11-27"
    assert err.failures == ["latency_p99_ms: 0.41 > budget 1e-06", "parity_topk_mismatches: 3 > 0"]
    assert tasks.gate_failure(["boom"], default="train").failures == ["boom"]
