"""The model gate: pass, fail against popularity or production, and forced deploys."""

from __future__ import annotations

import pytest

from recsys.errors import GateFailed, InputError
from recsys.evaluation.gate import ModelGateConfig, check_model_gate, enforce_model_gate

POP = {"ndcg@20": 0.10, "recall@20": 0.12}


def test_passes_without_production() -> None:
    d = check_model_gate({"ndcg@20": 0.15}, POP, None)
    assert d.passed and not d.forced and d.deployable
    assert len(d.checks) == 1 and d.failures == []
    assert "beats_popularity" in d.reasons[0]


def test_passes_within_allowed_drop() -> None:
    cfg = ModelGateConfig(max_drop_vs_production=0.05)
    d = check_model_gate({"ndcg@20": 0.15}, POP, {"ndcg@20": 0.155}, cfg)
    assert d.passed
    assert [c.name for c in d.checks] == ["beats_popularity", "vs_production"]


def test_fails_against_popularity_with_lift_and_on_a_tie() -> None:
    cfg = ModelGateConfig(min_lift_over_popularity=0.10)
    d = check_model_gate({"ndcg@20": 0.105}, POP, None, cfg)
    assert not d.passed
    assert d.checks[0].threshold == pytest.approx(0.11)
    # a model that only ties popularity has learnt nothing
    assert not check_model_gate({"ndcg@20": 0.10}, POP, None).passed


def test_enforce_raises_naming_metric_observed_and_threshold() -> None:
    cfg = ModelGateConfig(max_drop_vs_production=0.02)
    with pytest.raises(GateFailed) as exc:
        enforce_model_gate({"ndcg@20": 0.14}, POP, {"ndcg@20": 0.16}, cfg, report="r.html")
    err = exc.value
    assert err.gate == "model" and err.exit_code == 1 and err.report == "r.html"
    assert len(err.failures) == 1
    msg = str(err)
    assert "vs_production" in msg and "ndcg@20" in msg
    assert "0.1400" in msg and f"{0.16 * 0.98:.4f}" in msg


def test_forced_deploy_is_recorded() -> None:
    d = enforce_model_gate({"ndcg@20": 0.05}, POP, None, force=True)
    assert not d.passed and d.forced and d.deployable
    assert d.failures and "beats_popularity" in d.failures[0]
    # the decision serialises for XCom / the deployment record
    assert '"forced":true' in d.model_dump_json()
    # forcing a passing model changes nothing
    ok = enforce_model_gate({"ndcg@20": 0.2}, POP, None, force=True)
    assert ok.passed and not ok.forced


def test_other_metric_and_bad_inputs() -> None:
    cfg = ModelGateConfig(metric="recall@20")
    assert check_model_gate({"recall@20": 0.2}, POP, None, cfg).passed
    with pytest.raises(InputError, match="recall@20"):
        check_model_gate({"ndcg@20": 0.2}, POP, None, cfg)
    with pytest.raises(InputError, match="NaN"):
        check_model_gate({"ndcg@20": float("nan")}, POP, None)
    with pytest.raises(ValueError):
        ModelGateConfig(max_drop_vs_production=-0.1)
    with pytest.raises(ValueError):
        ModelGateConfig(unknown=1)  # type: ignore[call-arg]
