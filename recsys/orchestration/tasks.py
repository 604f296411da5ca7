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
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recsys.artifacts import InputRef, manifest_sha256, read_manifest
from recsys.errors import GateFailed, InputError, RecsysError
from recsys.logs import get_logger
from recsys.orchestration.config import RetrainConfig, load_retrain_config
from recsys.orchestration.paths import as_dict, day_of, from_dict, run_paths

log = get_logger(__name__)

# ---------------------------------------------------------------- plan


def plan(
    logical_date: dt.date | dt.datetime | str | None,
    as_of: str | None = None,
    config: RetrainConfig | None = None,
    run_after: dt.datetime | None = None,
) -> dict[str, Any]:
    """Resolve the run's day (:func:`~recsys.orchestration.paths.day_of`) and every artifact
    URI; pure (reads and writes nothing)."""
    cfg = config or load_retrain_config()
    day = day_of(logical_date, as_of, run_after)
    paths = run_paths(day, cfg.resolved_lake(), cfg.resolved_registry())
    for key, value in as_dict(paths).items():
        log.info("plan %-18s %s", key, value)
    return as_dict(paths)


# ---------------------------------------------------------------- CLI runner


def run_cli(args: list[str], env: dict[str, str] | None = None) -> str:
    """Run ``recsys ARGS`` in a child process; returns its stdout.

    Its stderr (progress and logs) streams into the task log line by line as
    it comes, so a long training shows its progress live. Exit 1 (a gate
    refused) becomes :class:`GateFailed` with the CLI's own check lines, exit
    2 an :class:`InputError` with its message: the task log names the failed
    check exactly as the CLI printed it.
    """
    cmd = [sys.executable, "-m", "recsys.cli", *args]
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
    if code == 1:
        raise gate_failure(tail, default=args[0])
    last = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {code}")
    raise InputError(f"recsys {args[0]} failed (exit {code}): {last.strip()}")


_GATE_LINE = re.compile(r"^(?P<gate>[\w-]+) gate failed: ")


def gate_failure(stderr_lines: list[str], default: str) -> GateFailed:
    """Rebuild the CLI's ``GateFailed`` (``<gate> gate failed: ...``, ``  - check`` lines)."""
    for i, line in enumerate(stderr_lines):
        m = _GATE_LINE.match(line.strip())
        if not m:
            continue
        checks: list[str] = []
        report = None
        for nxt in stderr_lines[i + 1 :]:
            text = nxt.strip()
            if text.startswith("- "):
                checks.append(text[2:])
            elif text.startswith("report: "):
                report = text[len("report: ") :]
            else:
                break
        return GateFailed(m.group("gate"), checks or [line.strip()], report)
    return GateFailed(default, [ln for ln in stderr_lines if ln.strip()][-5:] or ["exit code 1"])


def _config_arg(path: str | None) -> list[str]:
    return ["--config", path] if path else []


# ---------------------------------------------------------------- gates and steps


def validate(paths_d: dict[str, Any], config: RetrainConfig | None = None) -> dict[str, Any]:
    """Gate 1: the day's raw data. Raises GateFailed (report written) on a failed check."""
    from recsys.config import load_config
    from recsys.validation.gate import ValidationConfig, run_gate

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
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
    uri = build_snapshot(p.lake, p.day, load_config(cfg.graph_config, GraphConfig), out=p.graph)
    return {"graph": uri, "sha256": manifest_sha256(uri)}


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


def _train_config_file(base: str | None, epochs: int | None, tmp: Path) -> str | None:
    """The training config file, with the UI's epochs override merged in when given."""
    if epochs is None:
        return base
    data = read_train_config(base)
    data["epochs"] = int(epochs)
    out = tmp / "train.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return str(out)


def train_local(
    paths_d: dict[str, Any], epochs: int | None = None, config: RetrainConfig | None = None
) -> dict[str, Any]:
    """Train on this machine (CPU or its GPU): ``recsys train``."""
    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    with tempfile.TemporaryDirectory(prefix="recsys-train-") as tmp:
        cfg_file = _train_config_file(cfg.train_config, epochs, Path(tmp))
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
            ]
        )
    return {"model": p.model, "sha256": manifest_sha256(p.model)}


def recorded_metrics(model_uri: str) -> dict[str, Any]:
    """The holdout metrics ``recsys train`` recorded in the model artifact, keyed by model name.

    Training already scores the model and the popularity baseline on the
    snapshot's time-based holdout (full ranking, train items masked); reading
    them back costs nothing, where ``recsys evaluate`` also retrains MF-BPR.
    """
    from recsys.training.artifact import read_metrics

    m = read_metrics(model_uri)
    if not m.get("holdout"):
        raise InputError(f"{model_uri}: no holdout metrics recorded (empty holdout?)")
    return {"gnn": dict(m["holdout"]), **dict(m.get("baselines") or {})}


def evaluate(
    paths_d: dict[str, Any], model_uri: str | None = None, mode: str = "recorded"
) -> dict[str, Any]:
    """Metrics of a model and the baselines on the run's time-based holdout.

    ``full`` runs ``recsys evaluate --json`` (every baseline, MF-BPR retrained);
    ``recorded`` reads what training measured on the same holdout.
    """
    p = from_dict(paths_d)
    model = model_uri or p.model
    if mode == "recorded":
        return recorded_metrics(model)
    out = run_cli(["evaluate", "--model", model, "--graph", p.graph, "--json"])
    metrics: dict[str, Any] = json.loads(out[out.index("{") :])
    return metrics


CANDIDATE_KEYS = ("gnn", "model", "candidate")


def candidate_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The trained model's entry of the evaluation (the baselines sit beside it)."""
    for name in CANDIDATE_KEYS:
        if isinstance(metrics.get(name), dict):
            return {k: float(v) for k, v in metrics[name].items()}
    raise InputError(f"evaluation output has no model entry ({CANDIDATE_KEYS}): {sorted(metrics)}")


def production_metrics(
    paths_d: dict[str, Any], mode: str = "recorded"
) -> tuple[str | None, dict[str, float] | None, str | None]:
    """The production model, its metrics, and where they come from (``None``s if none serves).

    With ``full`` evaluation the production model is scored on this run's
    holdout when its shape still fits today's graph (the fair comparison);
    otherwise (new users or products since, or ``recorded`` mode) the holdout
    metrics recorded when it was trained stand in, and the report says so.
    """
    p = from_dict(paths_d)
    prod_model = production_model(p.registry)
    if prod_model is None:
        return None, None, None
    if prod_model == p.model:  # a rerun of the day that is serving: nothing else to beat
        return prod_model, None, None
    if mode == "full":
        try:
            metrics = candidate_metrics(evaluate(paths_d, prod_model, mode))
            return prod_model, metrics, "this run's holdout"
        except (InputError, GateFailed) as exc:
            log.warning("production model %s not scorable on %s (%s)", prod_model, p.graph, exc)
    try:
        return prod_model, candidate_metrics(recorded_metrics(prod_model)), "its own holdout"
    except InputError as exc:
        log.warning("production model %s has no usable metrics (%s)", prod_model, exc)
        return prod_model, None, None


def production_model(registry: str) -> str | None:
    """The model behind the bundle in production (from the bundle's lineage), if any."""
    from recsys.serving.registry import current

    entry = current(registry)
    if entry is None:
        return None
    try:
        manifest = read_manifest(entry.bundle_uri)
    except InputError:
        log.warning("production bundle %s unreadable: compared with nothing", entry.bundle_uri)
        return None
    ref = manifest.inputs.get("model")
    return ref.uri if ref else None


def evaluate_and_gate(
    paths_d: dict[str, Any],
    force_deploy: bool = False,
    config: RetrainConfig | None = None,
) -> dict[str, Any]:
    """Gate 3: evaluate the candidate and gate it against popularity and production.

    The decision and the metrics are written to the model report whatever the
    outcome; a failed gate raises unless ``force_deploy``, in which case the
    override is recorded in the report and logged as a warning.
    """
    from recsys.config import load_config
    from recsys.evaluation.gate import ModelGateConfig, check_model_gate, write_gate_report

    cfg = config or load_retrain_config()
    p = from_dict(paths_d)
    gcfg = load_config(cfg.model_gate_config, ModelGateConfig)
    metrics = evaluate(paths_d, mode=cfg.evaluation)
    prod_model, prod_metrics, prod_source = production_metrics(paths_d, cfg.evaluation)
    decision = check_model_gate(
        candidate_metrics(metrics), metrics["popularity"], prod_metrics, gcfg
    )
    if not decision.passed and force_deploy:
        decision = decision.model_copy(update={"forced": True})
    report = write_gate_report(
        p.model_report,
        p.day,
        candidate=InputRef(uri=p.model, sha256=manifest_sha256(p.model)),
        graph=InputRef(uri=p.graph, sha256=manifest_sha256(p.graph)),
        metrics=metrics,
        production=(prod_model, prod_metrics, prod_source),
        decision=decision,
        force_deploy=force_deploy,
        config=gcfg,
    )
    if not decision.passed and not force_deploy:
        raise GateFailed("model", decision.failures, report=report)
    if not decision.passed:
        log.warning(
            "model gate FAILED but deploy is FORCED (recorded in %s): %s", report, decision.failures
        )
    return {
        "model": p.model,
        "report": report,
        "passed": bool(decision.passed),
        "forced": bool(force_deploy and not decision.passed),
        "reasons": list(decision.reasons),
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
    args = ["export", "--model", p.model, "--version", version, *_config_arg(cfg.export_config)]
    reused = _published_bundle(out)
    if reused:
        with tempfile.TemporaryDirectory(prefix="recsys-export-") as tmp:
            run_cli([*args, "--out", str(Path(tmp) / version)])
        log.info("bundle %s is already published at %s: kept unchanged", version, out)
    else:
        run_cli([*args, "--out", out])
    return {"bundle": out, "version": version, "sha256": manifest_sha256(out), "reused": reused}


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
        results = compact_stream(store, cfg.resolved_lake(), day,
                                 password=settings.live_store_password,
                                 auth=settings.live_store_auth)
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
    """Inside Airflow, make a refused gate or bad input fail the task without retries.

    Retries exist for transient I/O; a gate that refused the data, or an input
    that breaks a rule, would refuse again.
    """
    try:
        yield
    except RecsysError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
