"""The ``recsys`` Typer app, its shared options and the root callback; the commands register
on it from their modules (:mod:`recsys.cli`)."""

from __future__ import annotations

from typing import Annotated

import typer

from recsys.logs import setup_logging

app = typer.Typer(
    name="recsys",
    help=(
        "Personalised product recommendations with a graph neural network.\n\n"
        "Typical flow: synth (or import) -> validate -> build-graph -> train -> evaluate "
        "-> export -> serve."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Bring your own data into the lake.", no_args_is_help=True)
app.add_typer(import_app, name="import")

LakeOpt = Annotated[str, typer.Option("--lake", help="Lake URI: folder, memory://..., abfs://...")]
DateArg = Annotated[str, typer.Option("--date", help="Logical date, YYYY-MM-DD")]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (pyarrow/pandas on this machine) or spark (PySpark: the cluster's session, "
        "else local mode; $RECSYS_SPARK_MASTER)",
    ),
]


def check_engine(name: str) -> str:
    if name not in ("local", "spark"):
        raise typer.BadParameter(f"{name!r}: expected local or spark", param_hint="--engine")
    return name


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    setup_logging(log_level)
