"""Task bodies of the retrain and compaction DAGs, as plain Python.

Each function takes the run's paths (from :mod:`recsys.orchestration.paths`)
and parameters, calls the ``recsys`` library or CLI, and returns a small
JSON-safe dict for XCom. Nothing here imports Airflow (``gate_is_final`` only
when a gate fails inside a task), so every step can be run and tested without
it; the DAG files only wire these together.

Heavy steps (train, evaluate, export) run the ``recsys`` CLI in a child
process: torch stays out of the Airflow worker, a crash cannot take the
worker down, and the command in the task log is the one a person would type.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.artifacts import InputRef, manifest_sha256, read_manifest
from recsys.errors import GateFailed, GateUndecided, InputError, RecsysError
from recsys.logs import get_logger
from recsys.orchestration.config import CONFIG_ENV, RetrainConfig, load_retrain_config
from recsys.orchestration.paths import (
    MODELS_DIR,
    RunPaths,
    as_dict,
    day_of,
    from_dict,
    run_paths,
)

if TYPE_CHECKING:
    from recsys.orchestration.databricks_job import Step

log = get_logger(__name__)

# ---------------------------------------------------------------- plan


def plan(
    logical_date: dt.date | dt.datetime | str | None,
    as_of: str | None = None,
    config: RetrainConfig | None = None,
    run_after: dt.datetime | None = None,
) -> dict[str, Any]:
    """Resolve the run's day (:func:`~recsys.orchestration.paths.day_of`) and every artifact
    URI; pure (reads and writes nothing: :func:`check_processable` looks at the lake)."""
    cfg = config or load_retrain_config()
    day = day_of(logical_date, as_of, run_after)
    paths = run_paths(day, cfg.resolved_lake(), cfg.resolved_registry())
    for key, value in as_dict(paths).items():
        log.info("plan %-18s %s", key, value)
    return as_dict(paths)


def check_processable(day: dt.date, config: RetrainConfig | None = None) -> None:
    """Fail loudly, naming the reason, when a run for ``day`` would process nothing: a day
    before the configured ``start_date``, a lake without events, a day before its first
    events partition, or a past day without a partition while later days have one (it had
    no events or was never imported: the sensor would wait for nothing)."""
    from recsys.data.lake import list_partitions
    from recsys.data.schema import EVENTS

    cfg = config or load_retrain_config()
    where = os.environ.get(CONFIG_ENV) or "the pipeline config"
    if cfg.start_date is not None and day < cfg.start_date:
        raise InputError(
            f"{day}: before the pipeline's start_date {cfg.start_date} ({where}): nothing is "
            "processed before it; set start_date earlier to run or backfill this day"
        )
    lake = cfg.resolved_lake()
    days = list_partitions(lake, EVENTS)
    if not days:
        raise InputError(
            f"{lake}/{EVENTS}: no events partition at all, nothing to process for {day}: "
            "import the shop's events first (recsys import events, or recsys synth)"
        )
    if day < days[0]:
        raise InputError(
            f"{day}: before the lake's first events partition ({days[0]} in {lake}/{EVENTS}): "
            f"nothing to process; run or backfill from {days[0]} on"
        )
    if day < days[-1] and day not in set(days):
        raise InputError(
            f"{lake}/{EVENTS}: no partition for {day} although later days have one (through "
            f"{days[-1]}): the day had no events or was never imported, so nothing to process"
        )


# ---------------------------------------------------------------- CLI runner


def run_cli(args: list[str], env: dict[str, str] | None = None, report: str | None = None) -> str:
    """Run ``recsys ARGS`` in a child process; returns its stdout.

    Its stderr (progress and logs) streams into the task log line by line as it comes, so
    a long training shows its progress live. Exit 1 (a gate refused) becomes the
    :class:`GateFailed` of the gate's own ``report.json`` at ``report`` (every gate writes
    one, pass or fail: :func:`recsys.reports.read_gate_report`); the console output is
    for people and is never parsed. Exit 2 becomes an :class:`InputError` with the CLI's
    last message.
    """
    cmd = [sys.executable, "-m", "recsys.cli", *args]
    if report is not None:
        clear_report(report)  # what is read back on exit 1 must be this run's
    log.info("running: recsys %s", " ".join(args))
    tail: list[str] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            log.info("| %s", line)
            tail = [*tail[-199:], line]
        code = proc.wait()
        out.seek(0)
        stdout = out.read()
    if code == 0:
        return stdout
    if code == 1 and report is not None:
        from recsys.reports import read_gate_report

        try:
            gate = read_gate_report(report)
        except InputError as exc:
            raise GateFailed(
                args[0], [f"recsys {args[0]} exited 1 but wrote no gate report ({exc})"], report
            ) from None
        if gate.passed:
            raise GateFailed(
                gate.gate, [f"recsys {args[0]} exited 1 but its report says passed"], report
            )
        raise gate.error(report)
    last = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {code}")
    if code == 1:
        raise GateFailed(args[0], [f"recsys {args[0]} exited 1: {last.strip()}"])
    raise InputError(f"recsys {args[0]} failed (exit {code}): {last.strip()}")


def clear_report(uri: str) -> None:
    from recsys.storage import exists, get_fs

    if exists(uri):
        fs, path = get_fs(uri)
        fs.rm(path, recursive=True)


def _config_arg(path: str | None) -> list[str]:
    return ["--config", path] if path else []


# ---------------------------------------------------------------- gates and steps


def validate(paths_d: dict[str, Any], config: RetrainConfig | None = None) -> dict[str, Any]:
    """Gate 1: the day's raw data. Raises GateFailed (report written) on a failed check."""
    from recsys.config import load_config
    from recsys.validation.gate import ValidationConfig, run_gate

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    if cfg.engine == "spark":
        spark_step("validate", p, cfg)
    else:
        vcfg = load_config(cfg.validation_config, ValidationConfig)
        result = run_gate(p.lake, p.day, p.validation_report, vcfg)
        log.info("validation %s passed: %s", p.day, result.summary())
    return {"report": p.validation_report, "sha256": manifest_sha256(p.validation_report)}


def build_graph(paths_d: dict[str, Any], config: RetrainConfig | None = None) -> dict[str, Any]:
    """Point-in-time graph snapshot as of the run's day; gate 2 (graph) runs inside."""
    from recsys.config import load_config
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    if cfg.engine == "spark":
        spark_step("build_graph", p, cfg)
        uri = p.graph
    else:
        uri = build_snapshot(
            p.lake,
            p.day,
            load_config(cfg.graph_config, GraphConfig),
            out=p.graph,
            report=p.graph_report,
        )
    return {"graph": uri, "sha256": manifest_sha256(uri), "report": p.graph_report}


def spark_step(step: Step, p: RunPaths, cfg: RetrainConfig) -> None:
    """``engine = spark`` on this machine: the step's ``recsys`` command line with
    ``--engine spark`` in a child process (PySpark in local mode on ``spark.master``), the
    very arguments a Databricks run gets (:mod:`recsys.orchestration.databricks_job`)."""
    from recsys.orchestration.databricks_job import report_of, step_args

    run_cli(
        step_args(step, p, cfg, "spark"),
        env={"RECSYS_SPARK_MASTER": cfg.spark.master},
        report=report_of(step, p),
    )


def read_train_config(path: str | None) -> dict[str, Any]:
    """The training config file as a dict (validated as a TrainConfig by ``recsys train``)."""
    if not path:
        return {}
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        return dict(yaml.safe_load(text) or {})
    if path.endswith(".toml"):
        import tomllib

        return dict(tomllib.loads(text))
    return dict(json.loads(text))


def _train_config_file(
    base: str | None, epochs: int | None, tmp: Path, budget_s: float | None = None
) -> str | None:
    """The training config file, with the UI's epochs override and the run's time budget
    merged in when given."""
    if epochs is None and budget_s is None:
        return base
    data = read_train_config(base)
    if epochs is not None:
        data["epochs"] = int(epochs)
        data["warm_epochs"] = int(epochs)
    if budget_s is not None:
        data["max_train_seconds"] = float(budget_s)
    out = tmp / "train.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return str(out)


def train_local(
    paths_d: dict[str, Any], epochs: int | None = None, config: RetrainConfig | None = None
) -> dict[str, Any]:
    """Train on this machine (CPU or its GPU): ``recsys train``."""
    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    init = previous_model(p.lake, p.day) if cfg.warm_start else None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recsys-train-") as tmp:
        cfg_file = _train_config_file(cfg.train_config, epochs, Path(tmp), cfg.train_budget_s)
        run_cli(
            [
                "train",
                "--graph",
                p.graph,
                "--out",
                p.model,
                "--device",
                cfg.train_device,
                *_config_arg(cfg_file),
                *(["--init-from", init] if init else []),
            ]
        )
    from recsys.training.artifact import read_metrics

    metrics = read_metrics(p.model)
    # the run's record (XCom): how it started, how far it got and in how long; wall time
    # stays out of the artifact (its bytes are a function of graph, config and seed)
    return {
        "model": p.model,
        "sha256": manifest_sha256(p.model),
        "start": metrics.get("start", {"mode": "cold"}),
        "epochs_run": metrics.get("epochs_run"),
        "budget_s": cfg.train_budget_s,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def previous_model(lake: str, day: dt.date) -> str | None:
    """The model to warm-start the run of ``day`` from: the latest model run of an earlier
    day in the lake that its model gate did not refuse and whose files match its manifest
    (in a daily pipeline, the one production serves). Chosen by day, not by what serves now,
    so a rerun of ``day`` starts from the same model (same bytes out) and a backfill never
    learns from a later day."""
    from recsys.graph.snapshot import list_snapshots
    from recsys.reports import MODEL, read_gate_report, report_uri
    from recsys.storage import join
    from recsys.training.artifact import require_model

    # model runs are folders as_of=YYYY-MM-DD with a manifest, as snapshots are
    for d, uri in reversed(list_snapshots(join(lake, MODELS_DIR))):
        if d >= day:
            continue
        try:
            gate = read_gate_report(report_uri(lake, MODEL, d))
        except InputError:
            gate = None  # no gate report (gate not run that day): nothing refused it
        if gate is not None and gate.decision == "failed":
            log.info("warm start: skipping the model of %s (its model gate failed)", d)
            continue
        try:
            # a damaged model is passed over, not trained from (and never fails the run)
            require_model(uri, verify=True)
        except InputError as exc:
            log.warning("warm start: skipping the model of %s (%s)", d, exc)
            continue
        return uri
    return None


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


def export(paths_d: dict[str, Any], config: RetrainConfig | None = None) -> dict[str, Any]:
    """The ONNX bundle, in its version's folder; gate 4 (parity, latency) runs in ``recsys export``.

    A version's folder is written once. When a rerun trained the very same
    model (same version) whose bundle is already published, the gate runs again
    on a throw-away export and the published folder is kept as it is: the
    registry may be serving it, pinned by its manifest hash, and nothing
    guarantees a second export is byte-identical (a changed export config or
    exporter would rewrite the served files under the server).
    """
    from recsys.orchestration.paths import bundle_uri, bundle_version

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    version = bundle_version(p.day, manifest_sha256(p.model))
    out = bundle_uri(p, version)
    args = [
        "export",
        "--model",
        p.model,
        "--version",
        version,
        "--report",
        p.export_report,
        *_config_arg(cfg.export_config),
    ]
    reused = _published_bundle(out)
    if reused:
        with tempfile.TemporaryDirectory(prefix="recsys-export-") as tmp:
            run_cli([*args, "--out", str(Path(tmp) / version)], report=p.export_report)
        log.info("bundle %s is already published at %s: kept unchanged", version, out)
    else:
        run_cli([*args, "--out", out], report=p.export_report)
    return {
        "bundle": out,
        "version": version,
        "sha256": manifest_sha256(out),
        "reused": reused,
        "report": p.export_report,
    }


def _published_bundle(uri: str) -> bool:
    """Whether a complete, intact bundle is at ``uri`` (a damaged one may be replaced)."""
    from recsys.artifacts import MANIFEST, verify_artifact
    from recsys.storage import exists, join

    if not exists(join(uri, MANIFEST)):
        return False
    try:
        verify_artifact(uri)
    except InputError as exc:
        log.warning("bundle %s is damaged (%s): exporting it again", uri, exc)
        return False
    return True


def smoke_user(paths_d: dict[str, Any], config: RetrainConfig) -> str:
    """The configured smoke-test user, else the first user of the run's graph snapshot."""
    if config.deploy.smoke_user:
        return config.deploy.smoke_user
    from recsys.graph.snapshot import load_id_maps

    users, _ = load_id_maps(from_dict(paths_d).graph)
    if len(users) == 0:
        raise InputError("graph snapshot has no users to smoke-test with")
    return str(users[0])


def deploy(
    paths_d: dict[str, Any],
    bundle: dict[str, Any],
    gate: dict[str, Any] | None = None,
    backend: str | None = None,
    config: RetrainConfig | None = None,
) -> dict[str, Any]:
    """Gate 5: publish, smoke-test the live endpoint, roll back automatically on failure.

    Either way a deployment record (the last link of the lineage) is written
    at the run's ``deploy_report``: bundle, versions, smoke outcome, rollback,
    and whether the model gate was overridden.
    """
    from recsys.orchestration.deploy import deploy_bundle, get_backend, write_deploy_record
    from recsys.orchestration.smoke import wait_until_served

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    dcfg = cfg.deploy
    impl = get_backend(backend or dcfg.backend, p.registry, dcfg)
    smoke = None
    if dcfg.serve_url:
        user = smoke_user(paths_d, cfg)
        url = dcfg.serve_url

        def smoke(version: str) -> object:
            return wait_until_served(url, user, version, dcfg.readiness_timeout_s, dcfg.api_key)

    previous = impl.current()
    try:
        result = deploy_bundle(impl, str(bundle["bundle"]), str(bundle["version"]), smoke)
    except GateFailed as exc:
        record = {
            "backend": impl.name,
            "version": str(bundle["version"]),
            "bundle_uri": str(bundle["bundle"]),
            "previous_version": previous,
            "smoke": "failed",
            "rolled_back": True,
            "failures": exc.failures,
        }
        exc.report = write_deploy_record(p.deploy_report, p.day, record, p.model_report, gate)
        raise
    out = result.model_dump(mode="json")
    write_deploy_record(p.deploy_report, p.day, out, p.model_report, gate)
    return out


# ---------------------------------------------------------------- compaction


def compact(
    logical_date: dt.date | dt.datetime | str | None,
    config: RetrainConfig | None = None,
    run_after: dt.datetime | None = None,
) -> dict[str, Any]:
    """Move the servers' accepted events into the lake: the memory store's log for the
    logical day, or the Redis stream for every day up to and including it."""
    from recsys.orchestration.compaction import compact_events, compact_stream

    cfg = config or load_retrain_config()
    day = day_of(logical_date, run_after=run_after)
    store = cfg.resolved_live_store()
    if store in ("", "memory"):
        results = [compact_events(cfg.event_log, cfg.resolved_lake(), day)]
    else:
        from recsys.config import Settings

        settings = Settings()
        results = compact_stream(
            store,
            cfg.resolved_lake(),
            day,
            password=settings.live_store_password,
            auth=settings.live_store_auth,
        )
    return {
        "partitions": [r.partition for r in results],
        "from_log": sum(r.from_log for r in results),
        "added": sum(r.added for r in results),
        "total": sum(r.total for r in results),
        "bad_lines": sum(r.bad_lines for r in results),
        "new_users": sum(r.new_users for r in results),
    }


@contextmanager
def gate_is_final() -> Iterator[None]:
    """Inside Airflow, make a refused gate or bad input fail the task without retries, and an
    undecided gate that deploys nothing skip it (and so the export and deploy after it).

    Retries exist for transient I/O; a gate that refused the data, or an input
    that breaks a rule, would refuse again. An undecided model gate is neither a failure
    nor a pass: the task is skipped with the gate's message, and the report says why.
    """
    try:
        yield
    except GateUndecided as exc:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(str(exc)) from exc
    except RecsysError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
