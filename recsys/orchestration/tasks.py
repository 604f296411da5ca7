"""Task bodies of the retrain and compaction DAGs, as plain Python.

Each function takes the run's paths (from :mod:`recsys.orchestration.paths`)
and parameters, calls the ``recsys`` library or CLI, and returns a small
JSON-safe dict for XCom. Nothing here imports Airflow, so every step can be run
and tested without it; the DAG files only wire these together. Here: the plan,
validation, the graph, export, deploy and compaction; training in
:mod:`~recsys.orchestration.train_step`, the model gate in
:mod:`~recsys.orchestration.model_gate`.

Heavy steps (train, evaluate, export) run the ``recsys`` CLI in a child process
(:func:`~recsys.orchestration.cli_runner.run_cli`): torch stays out of the Airflow
worker, a crash cannot take the worker down, and the command in the task log is the
one a person would type.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.artifacts import manifest_sha256
from recsys.errors import GateFailed, InputError
from recsys.logs import get_logger
from recsys.orchestration.cli_runner import config_arg, run_cli
from recsys.orchestration.config import CONFIG_ENV, RetrainConfig, load_retrain_config
from recsys.orchestration.paths import (
    RunPaths,
    as_dict,
    day_of,
    from_dict,
    run_paths,
)

if TYPE_CHECKING:
    from recsys.orchestration.databricks_job import Step

log = get_logger(__name__)


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
        *config_arg(cfg.export_config),
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
