"""Airflow runs against a throw-away AIRFLOW_HOME (set before anything imports Airflow), whose
metadata DB is migrated once per session for the modules that run DAGs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# tests/ is on sys.path (rootdir conftest); importing sets the environment up
from airflow_sandbox import pytest_unconfigure

__all__ = ["airflow_db", "pytest_unconfigure"]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
