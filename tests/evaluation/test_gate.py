"""The model gate on per-user metrics: pass, fail and undecided, production's subset, policy."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import GateFailed, GateUndecided, InputError
from recsys.evaluation.gate import (
    CANDIDATE,
    POPULARITY,
    PRODUCTION,
    ModelGateConfig,
    check_model_gate,
    decide_deploy,
)
from recsys.evaluation.holdout import HoldoutScores

N = 400
M = "ndcg@20"


def _hits(rate: float, seed: int, n: int = N) -> np.ndarray:
    """Per-user NDCG-like values: 0, or a hit's discount, with probability ``rate``."""
    rng = np.random.default_rng(seed)
    hit = rng.random(n) < rate
    return np.where(hit, 1.0 / np.log2(rng.integers(2, 22, n)), 0.0)


def _scores(cand: np.ndarray, pop: np.ndarray, prod: np.ndarray | None = None) -> HoldoutScores:
    s = HoldoutScores(np.arange(cand.size), np.array([f"u{i}" for i in range(cand.size)]))
    s.add(CANDIDATE, {M: cand, "recall@20": cand})
    s.add(POPULARITY, {M: pop, "recall@20": pop})
    if prod is not None:
        s.add(PRODUCTION, {M: prod, "recall@20": prod})
    return s


def _status(report: object) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}  # type: ignore[attr-defined]


def test_clearly_better_passes_with_intervals_in_the_report() -> None:
    report = check_model_gate(_scores(_hits(0.45, 1), _hits(0.15, 2)))
    assert report.decision == "passed" and _status(report) == {"beats_popularity": "passed"}
    check = report.checks[0]
    assert check.interval is not None and check.interval[0] > 0 == check.threshold
    assert "over 400 users" in check.observed
    m = report.details["metrics"]
    assert m[CANDIDATE]["users"] == 400 and len(m[CANDIDATE][f"{M}_ci"]) == 2
    assert m[CANDIDATE][f"{M}_ci"][0] < m[CANDIDATE][M] < m[CANDIDATE][f"{M}_ci"][1]
    assert report.details["bootstrap"] == {"resamples": 2000, "seed": 0, "paired_by": "user"}


def test_clearly_worse_fails_and_equal_is_undecided() -> None:
    worse = check_model_gate(_scores(_hits(0.05, 1), _hits(0.3, 2)))
    assert worse.decision == "failed" and worse.checks[0].interval[1] <= 0  # type: ignore[index]
    # equal in distribution, independent draws: the interval straddles zero
    equal = check_model_gate(_scores(_hits(0.2, 1), _hits(0.2, 2)))
    assert equal.decision == "undecided"
    low, high = equal.checks[0].interval  # type: ignore[misc]
    assert low <= 0 < high
    assert equal.error("r").__class__ is GateUndecided
    assert isinstance(worse.error("r"), GateFailed) and not isinstance(worse.error(), GateUndecided)


def test_a_copy_of_popularity_fails_a_copy_of_production_passes() -> None:
    pop = _hits(0.2, 2)
    report = check_model_gate(_scores(pop.copy(), pop, pop.copy()), production="prod-bundle")
    assert _status(report) == {"beats_popularity": "failed", "vs_production": "passed"}
    assert report.checks[0].interval == (0.0, 0.0)


def test_production_is_compared_on_the_users_it_can_score() -> None:
    cand, prod = _hits(0.3, 1), _hits(0.3, 1)
    prod[:70] = np.nan  # new since production's snapshot
    cand[:70] = 0.0  # the candidate's misses there must not count against it
    report = check_model_gate(_scores(cand, _hits(0.1, 2), prod), production="prod-bundle")
    check = next(c for c in report.checks if c.name == "vs_production")
    assert check.status == "passed"
    assert report.details["comparisons"][PRODUCTION]["users"] == 330
    assert report.details["comparisons"][PRODUCTION]["left_out"] == 70
    assert check.note is not None and "70 of 400" in check.note
    assert report.details["metrics"][PRODUCTION]["users"] == 330


def test_worse_than_production_beyond_the_margin_fails() -> None:
    cfg = ModelGateConfig(max_drop_vs_production=0.05)
    report = check_model_gate(
        _scores(_hits(0.25, 1), _hits(0.05, 2), _hits(0.5, 3)), cfg, production="prod-bundle"
    )
    assert _status(report) == {"beats_popularity": "passed", "vs_production": "failed"}
    c = report.checks[1]
    assert c.threshold == pytest.approx(
        -0.05 * report.details["comparisons"][PRODUCTION]["baseline_mean"]
    )
    assert "vs_production" in report.failure_lines()[0]


def test_too_few_users_is_undecided_without_a_test() -> None:
    report = check_model_gate(_scores(_hits(0.9, 1, 12), _hits(0.0, 2, 12)))
    assert report.decision == "undecided"
    assert "12 users compared, fewer than min_users=30" in report.checks[0].observed
    assert (
        check_model_gate(
            _scores(_hits(0.9, 1, 12), _hits(0.0, 2, 12)), ModelGateConfig(min_users=10)
        ).decision
        == "passed"
    )


def test_same_seed_same_report_other_seed_same_decision() -> None:
    s = _scores(_hits(0.3, 1), _hits(0.15, 2))
    a, b = check_model_gate(s), check_model_gate(s)
    assert a.checks[0].interval == b.checks[0].interval
    for seed in range(1, 6):
        other = check_model_gate(s, ModelGateConfig(seed=seed))
        assert other.decision == a.decision
        assert other.checks[0].interval != a.checks[0].interval


def test_undecided_policy_and_forced_deploys() -> None:
    undecided = check_model_gate(_scores(_hits(0.2, 1), _hits(0.2, 2)))
    failed = check_model_gate(_scores(_hits(0.05, 1), _hits(0.3, 2)))
    passed = check_model_gate(_scores(_hits(0.45, 1), _hits(0.15, 2)))
    first = decide_deploy(undecided, "deploy_if_no_production", None, False)
    assert first.deploy and not first.forced and "no model serves yet" in first.reason
    keep = decide_deploy(undecided, "deploy_if_no_production", "prod", False)
    assert not keep.deploy and "production keeps serving" in keep.reason
    assert not decide_deploy(undecided, "keep_production", None, False).deploy
    assert decide_deploy(undecided, "keep_production", "prod", True).forced
    assert not decide_deploy(failed, "deploy_if_no_production", None, False).deploy
    forced = decide_deploy(failed, "keep_production", "prod", True)
    assert forced.deploy and forced.forced
    assert decide_deploy(passed, "keep_production", "prod", True) == decide_deploy(
        passed, "keep_production", "prod", False
    )


def test_bad_inputs_name_the_problem() -> None:
    s = _scores(_hits(0.3, 1), _hits(0.1, 2))
    with pytest.raises(InputError, match="recall@10"):
        check_model_gate(s, ModelGateConfig(metric="recall@10"))
    with pytest.raises(InputError, match="'production'"):
        check_model_gate(s, production="prod-bundle")
    bad = _hits(0.3, 1)
    bad[3] = np.nan
    with pytest.raises(InputError, match="candidate must score every holdout user"):
        check_model_gate(_scores(bad, _hits(0.1, 2)))
    with pytest.raises(ValueError):
        ModelGateConfig(undecided_policy="deploy_always")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ModelGateConfig(unknown=1)  # type: ignore[call-arg]
