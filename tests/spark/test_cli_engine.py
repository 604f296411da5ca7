"""``--engine`` on the command line: an unknown engine and a lake Spark cannot read are
usage errors (exit 2) named before any JVM starts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recsys.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_engine_option_refuses_what_it_cannot_run(
    make_lake: Callable[..., str], tmp_path: Path
) -> None:
    lake = make_lake(days=2)
    r = _cli("validate", "--lake", lake, "--date", "2026-03-10", "--engine", "dask")
    assert r.returncode == 2 and "'dask': expected local or spark" in r.stderr
    r = _cli("build-graph", "--lake", lake, "--as-of", "2026-03-10", "--engine", "dask")
    assert r.returncode == 2 and "--engine" in r.stderr
    # a lake with no events in the window: named at once, no Spark session started
    t0 = time.monotonic()
    r = _cli(
        "build-graph",
        "--lake",
        str(tmp_path / "empty"),
        "--as-of",
        "2026-03-10",
        "--engine",
        "spark",
    )
    assert r.returncode == 2 and "no events partition" in r.stderr
    assert time.monotonic() - t0 < 30
