"""A throw-away AIRFLOW_HOME for the tests that run Airflow (tests/dags, tests/orchestration).

Their conftest files import this module, so the environment is set before
anything imports Airflow; settings already in the environment (a developer's
own AIRFLOW_HOME, say) win over these defaults.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_home = Path(tempfile.gettempdir()) / f"recsys-airflow-tests-{os.getpid()}"
os.environ.setdefault("AIRFLOW_HOME", str(_home))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_home}/airflow.db")
_home.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The throw-away metadata DB, migrated once per session (conftests that run DAGs import
    this fixture)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


def dag_states(dag: object, run_id: str) -> dict[str, str]:
    """The state of every task instance of one run of ``dag`` (a ``dag.test()`` run)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag.dag_id,  # type: ignore[attr-defined]
                TaskInstance.run_id == run_id,
            )
        ).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def pytest_unconfigure(config: object) -> None:
    if os.environ.get("AIRFLOW_HOME") == str(_home):  # ours, not a developer's home
        shutil.rmtree(_home, ignore_errors=True)
