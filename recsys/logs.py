"""Logging with context: every line names the run and the logical date when known."""

from __future__ import annotations

import logging
import os

_CONTEXT_VARS = {
    "run_id": ("RECSYS_RUN_ID", "AIRFLOW_CTX_DAG_RUN_ID"),
    "logical_date": (
        "RECSYS_LOGICAL_DATE",
        "AIRFLOW_CTX_LOGICAL_DATE",
        "AIRFLOW_CTX_EXECUTION_DATE",
    ),
}


def run_context() -> dict[str, str]:
    """Run id and logical date from the environment (set by Airflow or by the caller)."""
    out: dict[str, str] = {}
    for key, names in _CONTEXT_VARS.items():
        for name in names:
            if os.environ.get(name):
                out[key] = os.environ[name]
                break
    return out


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        ctx = run_context()
        record.ctx = " ".join(f"{k}={v}" for k, v in ctx.items()) or "-"
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(ctx)s] %(message)s")
    )
    root = logging.getLogger("recsys")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("recsys") else f"recsys.{name}")
