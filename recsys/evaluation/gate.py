"""The model gate: a candidate must beat popularity and not fall far below production.

The checks compare one metric (``ndcg@20`` by default) on the same holdout:

- popularity: ``candidate > popularity * (1 + min_lift_over_popularity)``
  (strictly: a model that only ties popularity has learnt nothing);
- production (when one is serving): ``candidate >= production * (1 - max_drop_vs_production)``.

Force-deploy is the caller's decision (an Airflow param); the decision records it
in ``forced`` so the lineage shows a model that went out despite the gate.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recsys.artifacts import InputRef
from recsys.errors import GateFailed, InputError
from recsys.reports import write_report

log = logging.getLogger(__name__)

__all__ = [
    "GateCheck",
    "GateDecision",
    "ModelGateConfig",
    "check_model_gate",
    "enforce_model_gate",
    "write_gate_report",
]

REPORT_KIND = "model_report"
REPORT_JSON = "report.json"
"""The decision, every check and the metrics it compared (what programs read)."""
REPORT_MD = "report.md"
"""The same for people (the task page links it)."""


class ModelGateConfig(BaseModel):
    """Thresholds of the model gate; lifts and drops are relative (0.05 = 5 %)."""

    model_config = ConfigDict(extra="forbid")

    metric: str = "ndcg@20"
    """Metric compared, a key of the evaluator's output (higher is better)."""
    min_lift_over_popularity: float = Field(default=0.0, ge=0.0)
    """The candidate must exceed popularity by more than this relative margin."""
    max_drop_vs_production: float = Field(default=0.02, ge=0.0, le=1.0)
    """The candidate may fall below the production model by at most this share."""


class GateCheck(BaseModel):
    name: str
    metric: str
    observed: float
    threshold: float
    passed: bool
    message: str


class GateDecision(BaseModel):
    """Outcome of the gate. ``forced`` is set by a caller that deploys anyway."""

    passed: bool
    reasons: list[str]
    """One readable line per check, pass or fail."""
    checks: list[GateCheck]
    forced: bool = False

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    @property
    def deployable(self) -> bool:
        return self.passed or self.forced


def _metric(values: dict[str, float], metric: str, whose: str) -> float:
    if metric not in values:
        known = ", ".join(sorted(values)) or "none"
        raise InputError(f"model gate: {whose} metrics lack {metric!r} (have: {known})")
    v = float(values[metric])
    if v != v:  # NaN compares false with everything and would pass silently
        raise InputError(f"model gate: {whose} {metric} is NaN")
    return v


def check_model_gate(
    candidate: dict[str, float],
    popularity: dict[str, float],
    production: dict[str, float] | None,
    config: ModelGateConfig | None = None,
) -> GateDecision:
    """Compare the candidate with popularity and, if given, the production model."""
    cfg = config or ModelGateConfig()
    m = cfg.metric
    cand = _metric(candidate, m, "candidate")
    pop = _metric(popularity, m, "popularity")
    checks: list[GateCheck] = []

    threshold = pop * (1.0 + cfg.min_lift_over_popularity)
    ok = cand > threshold
    checks.append(
        GateCheck(
            name="beats_popularity",
            metric=m,
            observed=cand,
            threshold=threshold,
            passed=ok,
            message=(
                f"beats_popularity: {m} {cand:.4f} {'>' if ok else '<='} {threshold:.4f} "
                f"(popularity {pop:.4f} x (1 + {cfg.min_lift_over_popularity:g}))"
            ),
        )
    )
    if production is not None:
        prod = _metric(production, m, "production")
        threshold = prod * (1.0 - cfg.max_drop_vs_production)
        ok = cand >= threshold
        checks.append(
            GateCheck(
                name="vs_production",
                metric=m,
                observed=cand,
                threshold=threshold,
                passed=ok,
                message=(
                    f"vs_production: {m} {cand:.4f} {'>=' if ok else '<'} {threshold:.4f} "
                    f"(production {prod:.4f} x (1 - {cfg.max_drop_vs_production:g}))"
                ),
            )
        )
    passed = all(c.passed for c in checks)
    return GateDecision(passed=passed, reasons=[c.message for c in checks], checks=checks)


def enforce_model_gate(
    candidate: dict[str, float],
    popularity: dict[str, float],
    production: dict[str, float] | None,
    config: ModelGateConfig | None = None,
    *,
    force: bool = False,
    report: str | None = None,
) -> GateDecision:
    """:func:`check_model_gate`, raising :class:`GateFailed` on failure unless ``force``.

    With ``force`` a failing decision comes back with ``forced=True`` (and a
    warning in the log) so the caller can record that the gate was overridden.
    """
    decision = check_model_gate(candidate, popularity, production, config)
    if decision.passed:
        return decision
    if force:
        log.warning("model gate failed but deployment is forced: %s", "; ".join(decision.failures))
        return decision.model_copy(update={"forced": True})
    raise GateFailed("model", decision.failures, report)


def write_gate_report(
    uri: str,
    day: dt.date,
    *,
    candidate: InputRef,
    graph: InputRef,
    metrics: dict[str, Any],
    production: tuple[str | None, dict[str, float] | None, str | None],
    decision: GateDecision,
    force_deploy: bool,
    config: ModelGateConfig,
) -> str:
    """Publish the model report of ``day`` at ``uri``: the decision whatever it was, the
    metrics of the candidate and the baselines, and the production model's (its URI, its
    metrics and where they were measured), and whether a failed gate was overridden."""
    prod_model, prod_metrics, prod_source = production
    forced = bool(force_deploy and not decision.passed)
    body = {
        "day": day.isoformat(),
        "candidate": candidate.uri,
        "metrics": metrics,
        "production_model": prod_model,
        "production_metrics": prod_metrics,
        "production_metrics_measured_on": prod_source,
        "gate": {
            "passed": bool(decision.passed),
            "reasons": list(decision.reasons),
            "checks": [c.model_dump(mode="json") for c in decision.checks],
            "force_deploy": bool(force_deploy),
            "forced": forced,
        },
    }
    lines = [f"# Model report {day.isoformat()}", "", f"candidate: `{candidate.uri}`", ""]
    lines += [f"- gate: {'PASSED' if decision.passed else 'FAILED'}"]
    if forced:
        lines += ["- **deploy forced despite the failed gate**"]
    lines += [f"  - {r}" for r in decision.reasons]
    lines += ["", "| model | metric | value |", "| --- | --- | --- |"]
    for name, values in sorted(metrics.items()):
        if isinstance(values, dict):
            lines += [f"| {name} | {k} | {v} |" for k, v in sorted(values.items())]
    return write_report(
        uri,
        REPORT_KIND,
        {REPORT_JSON: body, REPORT_MD: "\n".join(lines) + "\n"},
        inputs={"model": candidate, "graph": graph},
        config=config.model_dump(mode="json"),
        extra={"passed": bool(decision.passed), "forced": forced},
    )
