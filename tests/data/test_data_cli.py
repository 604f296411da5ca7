"""The data commands as a user runs them: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from recsys.data.lake import list_partitions
from recsys.data.schema import EVENTS


def recsys(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from recsys.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_synth_command(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake-check")
    args = ["--users", "300", "--items", "50", "--days", "3", "--end-date", "2026-11-27"]
    r = recsys("synth", "--out", lake, *args, "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "events" in r.stdout and "_truth" in r.stdout
    assert len(list_partitions(lake, EVENTS)) == 3


def test_import_error_is_one_line_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "log.csv"
    src.write_text("who,what,when\na,b,not-a-time\n")
    r = recsys(
        "import", "events", str(src), "--out", str(tmp_path / "lake"),
        "--user-col", "who", "--item-col", "what", "--time-col", "when",
    )  # fmt: skip
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "log.csv: column 'when'" in r.stderr and "'not-a-time'" in r.stderr
