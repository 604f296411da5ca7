"""The one command line: ``recsys``. Airflow tasks, containers and people all call it.

Exit codes: 0 success, 1 a gate failed, 2 usage or input error. Errors that are
the user's to fix print one readable message, never a traceback.
Heavy modules are imported inside each command so that ``recsys serve`` never
imports torch and ``recsys --help`` is instant.
"""

from __future__ import annotations

import gc
import sys

import typer
from pydantic import ValidationError

from recsys.cli import data, model, serving  # noqa: F401  (each registers its commands)
from recsys.cli.app import app
from recsys.errors import RecsysError

__all__ = ["app", "main"]


def _run() -> int | str | None:
    """Run the command; its exit code (a message: the error went to stderr, exit 1)."""
    try:
        app()
    except SystemExit as done:
        return done.code
    except RecsysError as exc:
        typer.echo(f"error: {exc}" if exc.exit_code == 2 else str(exc), err=True)
        return exc.exit_code
    except ValidationError as exc:  # an option value that breaks a config rule
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"error: invalid option: {problems}", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def main() -> None:
    code = _run()
    # Exit outside the except blocks, after a collection: an error's traceback holds the
    # frames of the failed call (a pyarrow reader of a truncated file, say), and a SystemExit
    # raised inside the handler would keep them alive into interpreter teardown, where
    # Arrow's thread pools are already gone and a still-joinable worker aborts the process
    # (SIGABRT, "terminate called without an active exception": apache/arrow#34314).
    gc.collect()
    sys.exit(code)
