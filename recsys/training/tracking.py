"""Experiment tracking with MLflow, optional.

``MLFLOW_TRACKING_URI`` points runs at a server or an Azure ML workspace;
without it runs go to a local store in ``./mlruns``: an SQLite database
``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts`` (MLflow 3 keeps
its plain-file store in maintenance mode, so SQLite is the local default). MLflow is imported only
when tracking is enabled, so training works without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from recsys.logs import get_logger
from recsys.training.config import TrackingConfig

log = get_logger(__name__)


class Tracker:
    """No-op tracker; :class:`MlflowTracker` records for real. Use as a context manager."""

    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifacts(self, folder: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass

    def __enter__(self) -> Tracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end("FAILED" if exc_type is not None else "FINISHED")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class MlflowTracker(Tracker):
    def __init__(self, cfg: TrackingConfig, run_name: str | None = None) -> None:
        import mlflow

        self._mlflow = mlflow
        uri = cfg.uri or os.environ.get("MLFLOW_TRACKING_URI")
        artifacts: str | None = None
        if not uri:
            local = Path("mlruns").resolve()
            local.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{local / 'mlflow.db'}"
            artifacts = (local / "artifacts").as_uri()
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(cfg.experiment) is None:
            mlflow.create_experiment(cfg.experiment, artifact_location=artifacts)
        mlflow.set_experiment(cfg.experiment)
        self._run = mlflow.start_run(run_name=run_name)
        self.run_id = self._run.info.run_id
        self._ended = False
        log.info("mlflow run %s at %s (experiment %s)", self.run_id, uri, cfg.experiment)

    def log_params(self, params: dict[str, Any]) -> None:
        flat = {k: str(v)[:500] for k, v in _flatten(params).items()}
        self._mlflow.log_params(flat)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        # MLflow metric names may not contain '@'
        clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items()}
        self._mlflow.log_metrics(clean, step=step)

    def log_artifacts(self, folder: str) -> None:
        self._mlflow.log_artifacts(folder)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)

    def end(self, status: str = "FINISHED") -> None:
        if not self._ended:
            self._mlflow.end_run(status=status)
            self._ended = True


def start_tracking(cfg: TrackingConfig, run_name: str | None = None) -> Tracker:
    """An MLflow tracker if enabled, else a no-op one."""
    if not cfg.enabled:
        return Tracker()
    return MlflowTracker(cfg, run_name)
