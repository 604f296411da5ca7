"""Airflow runs against a throw-away AIRFLOW_HOME (set before anything imports Airflow)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_home = Path(tempfile.gettempdir()) / f"recsys-airflow-tests-{os.getpid()}"
os.environ.setdefault("AIRFLOW_HOME", str(_home))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_home}/airflow.db")
_home.mkdir(parents=True, exist_ok=True)


def pytest_unconfigure(config: object) -> None:
    if os.environ.get("AIRFLOW_HOME") == str(_home):  # ours, not a developer's home
        shutil.rmtree(_home, ignore_errors=True)
