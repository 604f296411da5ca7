"""The model gate: decisions with uncertainty, champion and challenger on the same users.

The candidate, popularity and (when one serves) the production bundle are scored on the
same holdout users through the same evaluator (:mod:`recsys.evaluation.holdout`); one
metric (``ndcg@20`` by default) is compared user by user. For each comparison the per-user
differences ``d_u = candidate_u - baseline_u`` get a paired bootstrap interval
(:func:`recsys.evaluation.stats.bootstrap_means`: 2,000 resamples of users, seed 0, 95 %),
and the check's threshold ``t`` is

- popularity: ``t = min_lift_over_popularity * mean(popularity)`` (0 by default), over
  every holdout user;
- production: ``t = -max_drop_vs_production * mean(production)`` (a 2 % drop by default),
  over the users production can score (those new since its snapshot are left out, and the
  report says how many).

A check **passes** when the interval's lower bound is above ``t``, **fails** when its
upper bound is at or below ``t`` (the data say the candidate is not better: an exact copy
of popularity fails), and is **undecided** otherwise, or when fewer than ``min_users``
users could be compared. The gate's decision is ``failed`` if a check failed, else
``undecided`` if one is undecided, else ``passed``.

Undecided is an honest third outcome, never a silent pass or fail: it follows
``undecided_policy`` (``keep_production``: nothing is deployed; ``deploy_if_no_production``:
deploy when no model serves yet, else keep production). ``force_deploy`` (an Airflow param)
deploys whatever the decision and is recorded in the report.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.artifacts import InputRef
from recsys.errors import InputError
from recsys.evaluation.holdout import HoldoutScores
from recsys.evaluation.stats import bootstrap_means
from recsys.reports import Check, GateReport, write_gate_report
from recsys.storage import join

log = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "CANDIDATE",
    "POPULARITY",
    "PRODUCTION",
    "GateOutcome",
    "ModelGateConfig",
    "check_model_gate",
    "decide_deploy",
    "write_model_report",
]

REPORT_KIND = "model_report"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PER_USER = "per_user.parquet"
"""Every compared user's metric under each model: the decision can be recomputed from it."""
CANDIDATE = "gnn"
POPULARITY = "popularity"
PRODUCTION = "production"
BASELINES = (POPULARITY, "mf-bpr", "ease", "gf-cf")
"""Every baseline ``recsys evaluate`` scores; the gate needs popularity only."""


class ModelGateConfig(BaseModel):
    """Thresholds and statistics of the model gate; lifts and drops are relative (0.05 = 5 %)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = "ndcg@20"
    """Metric compared, per user (``recall@20``, ``ndcg@10``, ...; higher is better)."""
    min_lift_over_popularity: float = Field(default=0.0, ge=0.0)
    """The candidate must beat popularity by more than this share of popularity's mean."""
    max_drop_vs_production: float = Field(default=0.02, ge=0.0, le=1.0)
    """The candidate may fall below production by at most this share of production's mean."""
    confidence: float = Field(default=0.95, ge=0.5, lt=1.0)
    """Coverage of the paired bootstrap intervals."""
    n_resamples: int = Field(default=2000, ge=100)
    """Bootstrap resamples of the users."""
    seed: int = 0
    """Seed of the resampling (the same holdout gives the same report)."""
    min_users: int = Field(default=30, ge=1)
    """A comparison over fewer users than this is undecided without a test (an interval
    from a handful of users is not worth reading)."""
    undecided_policy: Literal["keep_production", "deploy_if_no_production"] = (
        "deploy_if_no_production"
    )
    """What an undecided gate does: never deploy, or deploy when no model serves yet."""


def _compare(
    name: str,
    cand: np.ndarray,
    base: np.ndarray,
    base_name: str,
    threshold_share: float,
    cfg: ModelGateConfig,
) -> tuple[Check, dict[str, Any]]:
    """One paired comparison; ``threshold_share`` scales the baseline's mean into ``t``."""
    m = cfg.metric
    both = np.isfinite(cand) & np.isfinite(base)
    n = int(both.sum())
    pct = f"{cfg.confidence:.0%}"
    sign = "+" if threshold_share >= 0 else "-"
    rule = (
        f"lower {pct} bound of mean {m} (candidate - {base_name}) > "
        f"{sign}{abs(threshold_share):g} x {base_name}'s mean"
    )
    detail: dict[str, Any] = {
        "baseline": base_name,
        "users": n,
        "left_out": int(np.isfinite(cand).sum() - n),
    }
    if n < cfg.min_users:
        observed = f"{n} users compared, fewer than min_users={cfg.min_users}"
        return Check(name=name, status="undecided", rule=rule, observed=observed), detail
    diff, base_mean = cand[both] - base[both], float(base[both].mean())
    (iv,) = bootstrap_means(
        diff[None, :], n_resamples=cfg.n_resamples, confidence=cfg.confidence, seed=cfg.seed
    )
    threshold = threshold_share * base_mean
    if iv.low > threshold:
        status: Literal["passed", "failed", "undecided"] = "passed"
    elif iv.high <= threshold:
        status = "failed"
    else:
        status = "undecided"
    observed = (
        f"{iv.fmt()} vs threshold {threshold:+.4f} ({base_name} {base_mean:.4f}, "
        f"candidate {float(cand[both].mean()):.4f})"
    )
    detail.update(
        {
            "difference": iv.mean,
            "interval": [iv.low, iv.high],
            "threshold": threshold,
            "baseline_mean": base_mean,
            "candidate_mean": float(cand[both].mean()),
        }
    )
    check = Check(
        name=name,
        status=status,
        rule=rule,
        observed=observed,
        value=iv.mean,
        threshold=threshold,
        interval=(iv.low, iv.high),
    )
    return check, detail


def check_model_gate(
    scores: HoldoutScores,
    config: ModelGateConfig | None = None,
    *,
    production: str | None = None,
    day: dt.date | None = None,
    holdout: dict[str, Any] | None = None,
) -> GateReport:
    """The gate's checks and decision on per-user metrics (``gnn``, ``popularity`` and, when
    ``production`` names the serving bundle, ``production``); see the module docstring."""
    cfg = config or ModelGateConfig()
    for model in [CANDIDATE, POPULARITY] + ([PRODUCTION] if production else []):
        if model not in scores.models:
            raise InputError(
                f"model gate: no per-user metrics for {model!r} "
                f"(have: {', '.join(sorted(scores.models)) or 'none'})"
            )
        if cfg.metric not in scores.models[model]:
            known = ", ".join(sorted(scores.models[model]))
            raise InputError(f"model gate: {model} metrics lack {cfg.metric!r} (have: {known})")
    cand = scores.models[CANDIDATE][cfg.metric]
    if not np.isfinite(cand).all():
        raise InputError("model gate: the candidate must score every holdout user")
    checks: list[Check] = []
    comparisons: dict[str, Any] = {}
    check, detail = _compare(
        "beats_popularity",
        cand,
        scores.models[POPULARITY][cfg.metric],
        POPULARITY,
        cfg.min_lift_over_popularity,
        cfg,
    )
    checks.append(check)
    comparisons[POPULARITY] = detail
    if production:
        prod = scores.models[PRODUCTION][cfg.metric]
        check, detail = _compare(
            "vs_production", cand, prod, PRODUCTION, -cfg.max_drop_vs_production, cfg
        )
        if detail["left_out"]:
            check = check.model_copy(
                update={
                    "note": f"{detail['left_out']} of {cand.size} holdout users are new since "
                    "production's snapshot (it cannot score them): compared on the rest"
                }
            )
        checks.append(check)
        comparisons[PRODUCTION] = detail
    summary = scores.summary(cfg.n_resamples, cfg.confidence, cfg.seed)
    return GateReport.of(
        "model",
        checks,
        day=day,
        counts={"holdout_users": int(scores.users.size)},
        details={
            "metric": cfg.metric,
            "confidence": cfg.confidence,
            "bootstrap": {"resamples": cfg.n_resamples, "seed": cfg.seed, "paired_by": "user"},
            "holdout": dict(holdout or {}),
            "production": production,
            "comparisons": comparisons,
            "metrics": summary,
        },
    )


@dataclass(frozen=True)
class GateOutcome:
    """Whether the run deploys after the gate, and why."""

    deploy: bool
    forced: bool
    reason: str


def decide_deploy(
    report: GateReport, policy: str, production: str | None, force_deploy: bool
) -> GateOutcome:
    """Apply the undecided policy and a forced deploy to the gate's decision."""
    if report.decision == "passed":
        return GateOutcome(True, False, "every check passed")
    if report.decision == "undecided":
        if policy == "deploy_if_no_production" and production is None:
            return GateOutcome(
                True, False, "undecided; no model serves yet (policy deploy_if_no_production)"
            )
        why = ("production keeps serving" if production else "no model serves yet") + (
            f" (policy {policy})"
        )
        if force_deploy:
            return GateOutcome(True, True, f"undecided; deploy FORCED ({why} otherwise)")
        return GateOutcome(False, False, f"undecided; {why}")
    if force_deploy:
        return GateOutcome(True, True, "failed; deploy FORCED despite the failed gate")
    return GateOutcome(
        False,
        False,
        "failed; production keeps serving" if production else "failed; nothing is deployed",
    )


def _markdown(report: GateReport, outcome: GateOutcome, candidate: str) -> str:
    d = report.details
    lines = [
        f"# Model report {report.day.isoformat() if report.day else ''}".rstrip(),
        "",
        f"candidate: `{candidate}`",
        "",
        f"- gate: **{report.decision.upper()}** -> "
        f"{'deploy' if outcome.deploy else 'no deploy'}: {outcome.reason}",
    ]
    if outcome.forced:
        lines += ["- **deploy forced despite the gate's decision**"]
    for c in report.checks:
        lines += [f"  - {c.status.upper()} {c.name}: {c.rule}", f"    - observed {c.observed}"]
        if c.note:
            lines += [f"    - {c.note}"]
    hold = d.get("holdout") or {}
    if hold:
        lines += ["", "holdout: " + ", ".join(f"{k} {v}" for k, v in hold.items())]
    lines += [
        "",
        f"| model | users | {d['metric']} | {d['confidence']:.0%} interval |",
        "| --- | --- | --- | --- |",
    ]
    for model, m in d["metrics"].items():
        ci = m.get(f"{d['metric']}_ci")
        value = m.get(d["metric"])
        shown = f"{value:.4f}" if value is not None else "-"
        lines += [
            f"| {model} | {m['users']} | {shown} | {f'[{ci[0]:.4f}, {ci[1]:.4f}]' if ci else '-'} |"
        ]
    return "\n".join(lines) + "\n"


def write_model_report(
    uri: str,
    report: GateReport,
    outcome: GateOutcome,
    scores: HoldoutScores,
    *,
    candidate: InputRef,
    graph: InputRef,
    production: InputRef | None,
    config: ModelGateConfig,
    force_deploy: bool,
) -> str:
    """Publish the model report at ``uri`` whatever the decision: ``report.json`` (the
    :class:`GateReport`, with the deploy outcome in its details), ``report.html`` and
    ``report.md`` for people, and ``per_user.parquet`` (every compared user's metric)."""
    from recsys.evaluation.report import render_gate_report

    report = report.model_copy(
        update={
            "subject": candidate.uri,
            "details": {
                **report.details,
                "deploy": outcome.deploy,
                "forced": outcome.forced,
                "outcome": outcome.reason,
                "force_deploy": bool(force_deploy),
                "undecided_policy": config.undecided_policy,
            },
        }
    )
    inputs = {"model": candidate, "graph": graph}
    if production is not None:
        inputs["production"] = production
    uri_out = write_gate_report(
        uri,
        report,
        kind=REPORT_KIND,
        documents={
            REPORT_MD: _markdown(report, outcome, candidate.uri),
            REPORT_HTML: render_gate_report(report),
            PER_USER: scores.to_frame(),
        },
        inputs=inputs,
        config=config.model_dump(mode="json"),
        extra={"forced": outcome.forced, "deploy": outcome.deploy},
    )
    log.info("model report %s: %s (%s)", uri_out, report.decision, outcome.reason)
    return uri_out


def per_user_uri(report_uri: str) -> str:
    return join(report_uri, PER_USER)
