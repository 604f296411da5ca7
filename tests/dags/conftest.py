"""Airflow runs against a throw-away AIRFLOW_HOME (set before anything imports Airflow)."""

from __future__ import annotations

# tests/ is on sys.path (rootdir conftest); importing sets the environment up
from airflow_sandbox import pytest_unconfigure

__all__ = ["pytest_unconfigure"]
