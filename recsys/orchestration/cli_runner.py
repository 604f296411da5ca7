"""How a task runs a step: ``recsys ARGS`` in a child process (:func:`run_cli`), its exit code
turned into the gate's own error, and :func:`gate_is_final`, which makes a refused gate or
bad input fail the Airflow task without retries (and an undecided gate skip it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from recsys.errors import GateFailed, GateUndecided, InputError, RecsysError
from recsys.logs import get_logger

log = get_logger(__name__)


def run_cli(args: list[str], env: dict[str, str] | None = None, report: str | None = None) -> str:
    """Run ``recsys ARGS`` in a child process; returns its stdout.

    Its stderr (progress and logs) streams into the task log line by line as it comes, so
    a long training shows its progress live. Exit 1 (a gate refused) becomes the
    :class:`GateFailed` of the gate's own ``report.json`` at ``report`` (every gate writes
    one, pass or fail: :func:`recsys.reports.read_gate_report`); the console output is
    for people and is never parsed. Exit 2 becomes an :class:`InputError` with the CLI's
    last message.
    """
    cmd = [sys.executable, "-m", "recsys.cli", *args]
    if report is not None:
        clear_report(report)  # what is read back on exit 1 must be this run's
    log.info("running: recsys %s", " ".join(args))
    tail: list[str] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            log.info("| %s", line)
            tail = [*tail[-199:], line]
        code = proc.wait()
        out.seek(0)
        stdout = out.read()
    if code == 0:
        return stdout
    if code == 1 and report is not None:
        from recsys.reports import read_gate_report

        try:
            gate = read_gate_report(report)
        except InputError as exc:
            raise GateFailed(
                args[0], [f"recsys {args[0]} exited 1 but wrote no gate report ({exc})"], report
            ) from None
        if gate.passed:
            raise GateFailed(
                gate.gate, [f"recsys {args[0]} exited 1 but its report says passed"], report
            )
        raise gate.error(report)
    last = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {code}")
    if code == 1:
        raise GateFailed(args[0], [f"recsys {args[0]} exited 1: {last.strip()}"])
    raise InputError(f"recsys {args[0]} failed (exit {code}): {last.strip()}")


def clear_report(uri: str) -> None:
    from recsys.storage import exists, get_fs

    if exists(uri):
        fs, path = get_fs(uri)
        fs.rm(path, recursive=True)


def config_arg(path: str | None) -> list[str]:
    return ["--config", path] if path else []


@contextmanager
def gate_is_final() -> Iterator[None]:
    """Inside Airflow, make a refused gate or bad input fail the task without retries, and an
    undecided gate that deploys nothing skip it (and so the export and deploy after it).

    Retries exist for transient I/O; a gate that refused the data, or an input
    that breaks a rule, would refuse again. An undecided model gate is neither a failure
    nor a pass: the task is skipped with the gate's message, and the report says why.
    """
    try:
        yield
    except GateUndecided as exc:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(str(exc)) from exc
    except RecsysError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
