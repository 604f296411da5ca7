"""The training task: ``recsys train`` on this machine, warm-started from the latest earlier
model that its gate did not refuse (:func:`previous_model`), with the UI's epochs and the
run's time budget merged into the training config.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from recsys.artifacts import manifest_sha256
from recsys.errors import InputError
from recsys.logs import get_logger
from recsys.orchestration.cli_runner import config_arg, run_cli
from recsys.orchestration.config import RetrainConfig, load_retrain_config
from recsys.orchestration.paths import MODELS_DIR, from_dict

log = get_logger(__name__)


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
                *config_arg(cfg_file),
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
