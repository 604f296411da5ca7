"""Gate 3's task: the candidate model against popularity and the production bundle, on the
same holdout users (``recsys evaluate`` in a child process), decided and reported.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from recsys.artifacts import InputRef, manifest_sha256, read_manifest
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.orchestration.cli_runner import run_cli
from recsys.orchestration.config import RetrainConfig, load_retrain_config
from recsys.orchestration.paths import from_dict

log = get_logger(__name__)


def production_bundle(registry: str) -> str | None:
    """The bundle in production, if one serves and it verifies (a damaged one is compared
    with nothing, with a warning: the gate then judges the candidate against popularity)."""
    from recsys.artifacts import verify_artifact
    from recsys.serving.registry import current

    entry = current(registry)
    if entry is None:
        return None
    try:
        verify_artifact(entry.bundle_uri)
    except InputError as exc:
        log.warning(
            "production bundle %s unusable (%s): compared with nothing", entry.bundle_uri, exc
        )
        return None
    return entry.bundle_uri


def evaluate(
    paths_d: dict[str, Any], mode: str = "gate", production: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Per-user metrics of the run's model, popularity (``full``: every baseline) and the
    ``production`` bundle on the run's holdout (``recsys evaluate`` in a child process: torch
    stays out of the worker); returns them and the holdout's description."""
    import pandas as pd

    from recsys.evaluation.gate import BASELINES, POPULARITY
    from recsys.evaluation.holdout import HoldoutScores

    p = from_dict(paths_d)
    with tempfile.TemporaryDirectory(prefix="recsys-evaluate-") as tmp:
        per_user = str(Path(tmp) / "per_user.parquet")
        args = [
            "evaluate",
            "--model",
            p.model,
            "--graph",
            p.graph,
            "--json",
            "--per-user",
            per_user,
            "--baselines",
            POPULARITY if mode == "gate" else ",".join(BASELINES),
        ]
        if production:
            args += ["--production-bundle", production]
        out = run_cli(args)
        scores = HoldoutScores.from_frame(pd.read_parquet(per_user))
    summary: dict[str, Any] = json.loads(out[out.index("{") :])
    return scores, dict(summary.get("_meta") or {})


def production_train_end(bundle: str) -> dt.date | None:
    """The last day the production model trained on: the day before its graph's holdout
    (from the bundle's lineage), or None when the lineage does not say."""

    try:
        graph = read_manifest(bundle).inputs.get("graph")
        start = read_manifest(graph.uri).extra.get("holdout_start") if graph else None
    except InputError:
        return None
    return dt.date.fromisoformat(str(start)) - dt.timedelta(days=1) if start else None


def _note_production_overlap(report: Any, bundle: str, holdout_start: str | None) -> Any:
    """Say so when production trained on days of today's holdout: its item tables have seen
    some of the pairs it is scored on, so the comparison leans its way (keeping it)."""
    end = production_train_end(bundle)
    if end is None or holdout_start is None or end < dt.date.fromisoformat(holdout_start):
        return report
    note = (
        f"production trained on data through {end}, inside this holdout (from "
        f"{holdout_start}): the comparison favours production"
    )
    log.warning("model gate: %s", note)
    checks = [
        c.model_copy(update={"note": "; ".join(x for x in (c.note, note) if x)})
        if c.name == "vs_production"
        else c
        for c in report.checks
    ]
    return report.model_copy(update={"checks": checks, "notes": [*report.notes, note]})


def evaluate_and_gate(
    paths_d: dict[str, Any],
    force_deploy: bool = False,
    config: RetrainConfig | None = None,
) -> dict[str, Any]:
    """Gate 3: the candidate against popularity and the production bundle, on the same users.

    The decision (passed, failed or undecided, with each comparison's interval) and every
    compared user's metrics are written to the model report whatever the outcome. A failed
    gate raises :class:`GateFailed`, an undecided one that its policy does not deploy
    :class:`GateUndecided`, unless ``force_deploy``: then the override is recorded in the
    report and logged as a warning.
    """
    from recsys.config import load_config
    from recsys.evaluation.gate import (
        ModelGateConfig,
        check_model_gate,
        decide_deploy,
        write_model_report,
    )

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    gcfg = load_config(cfg.model_gate_config, ModelGateConfig)
    prod = production_bundle(p.registry)
    scores, holdout = evaluate(paths_d, cfg.evaluation, prod)
    report = check_model_gate(
        scores,
        gcfg,
        production=prod,
        day=p.day,
        holdout={
            k: holdout[k]
            for k in (
                "holdout_start",
                "holdout_days",
                "holdout_users",
                "holdout_pairs",
                "holdout_target_met",
            )
            if k in holdout
        },
    )
    if prod:
        report = _note_production_overlap(report, prod, holdout.get("holdout_start"))
    outcome = decide_deploy(report, gcfg.undecided_policy, prod, force_deploy)
    uri = write_model_report(
        p.model_report,
        report,
        outcome,
        scores,
        candidate=InputRef(uri=p.model, sha256=manifest_sha256(p.model)),
        graph=InputRef(uri=p.graph, sha256=manifest_sha256(p.graph)),
        production=InputRef(uri=prod, sha256=manifest_sha256(prod)) if prod else None,
        config=gcfg,
        force_deploy=force_deploy,
    )
    if not outcome.deploy:
        raise report.error(uri)
    if outcome.forced:
        log.warning(
            "model gate %s but deploy is FORCED (recorded in %s): %s",
            report.decision.upper(),
            uri,
            report.failure_lines(),
        )
    elif report.decision == "undecided":
        log.warning("model gate UNDECIDED, deploying: %s (%s)", outcome.reason, uri)
    return {
        "model": p.model,
        "report": uri,
        "decision": report.decision,
        "passed": report.passed,
        "forced": outcome.forced,
        "deploy": outcome.deploy,
        "outcome": outcome.reason,
        "reasons": [c.line() for c in report.checks],
    }
