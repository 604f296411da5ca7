"""One local Spark session for the Spark engine's tests (``local[2]``, started once per test
session and only by the tests that ask for it: PySpark's JVM takes ~15 s to start here).

The session is the real thing: the pyspark wheel's jars on Debian's OpenJDK 17
(``scripts/setup.sh`` installs it), nothing fetched at run time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# tests/ is on sys.path (rootdir conftest); importing sets Airflow's environment up first
from airflow_sandbox import airflow_db, pytest_unconfigure

from tests.graph.conftest import lake, make_lake
from tests.validation.conftest import synth_lake

__all__ = ["airflow_db", "lake", "make_lake", "pytest_unconfigure", "spark", "synth_lake"]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    import logging

    from recsys.spark import get_spark

    # py4j logs its connections closing at interpreter exit, after pytest's streams are gone
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session = get_spark("local[2]")
    yield session
    session.stop()
