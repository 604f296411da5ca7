"""Airflow runs against a throw-away AIRFLOW_HOME (set before anything imports Airflow), whose
metadata DB is migrated once per session for the modules that run DAGs."""

from __future__ import annotations

# tests/ is on sys.path (rootdir conftest); importing sets the environment up
from airflow_sandbox import airflow_db, pytest_unconfigure

__all__ = ["airflow_db", "pytest_unconfigure"]
