"""Commands that bring data in and check and shape it: synth, import, validate, build-graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.app import DateArg, EngineOpt, LakeOpt, app, check_engine, import_app


@app.command()
def synth(
    out: Annotated[str, typer.Option("--out", help="Lake URI to write")],
    users: Annotated[int, typer.Option(help="Users at the end of the period")] = 2000,
    items: Annotated[int, typer.Option(help="Products at the end of the period")] = 500,
    days: Annotated[int, typer.Option(help="Number of daily partitions")] = 5,
    end_date: Annotated[
        str, typer.Option("--end-date", help="Last day, YYYY-MM-DD")
    ] = "2026-11-27",
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same lake")] = 1,
    events_per_user_day: Annotated[
        float, typer.Option(help="Mean events per active user and day")
    ] = 5.0,
) -> None:
    """Generate a synthetic shop: users, products and an event funnel, with a planted truth."""
    from recsys.data.lake import parse_date
    from recsys.data.synth import SynthConfig, generate

    cfg = SynthConfig(
        users=users,
        items=items,
        days=days,
        end_date=parse_date(end_date),
        seed=seed,
        events_per_user_day=events_per_user_day,
    )
    summary = generate(cfg, out)
    typer.echo(summary.describe())


@import_app.command("events")
def import_events_cmd(
    file: Annotated[str, typer.Argument(help="CSV or Parquet event log")],
    out: Annotated[str, typer.Option("--out", help="Lake URI to write")],
    user_col: Annotated[str, typer.Option("--user-col")] = "user_id",
    item_col: Annotated[str, typer.Option("--item-col")] = "item_id",
    time_col: Annotated[str, typer.Option("--time-col")] = "ts",
    type_col: Annotated[str | None, typer.Option("--type-col")] = None,
    value_col: Annotated[str | None, typer.Option("--value-col")] = None,
    event_id_col: Annotated[str | None, typer.Option("--event-id-col")] = None,
    default_type: Annotated[str, typer.Option("--default-type")] = "purchase",
    type_map: Annotated[
        str | None,
        typer.Option("--type-map", help="Map source event types, e.g. 'buy=purchase,pv=view'"),
    ] = None,
    users_file: Annotated[str | None, typer.Option("--users", help="User features file")] = None,
    users_id_col: Annotated[str, typer.Option("--users-id-col")] = "user_id",
    users_cols: Annotated[
        str | None,
        typer.Option("--users-cols", help="Mapping lake=source, e.g. 'age=Age,country=cc'"),
    ] = None,
    items_file: Annotated[str | None, typer.Option("--items", help="Product features file")] = None,
    items_id_col: Annotated[str, typer.Option("--items-id-col")] = "item_id",
    items_cols: Annotated[
        str | None,
        typer.Option("--items-cols", help="Mapping lake=source, e.g. 'category=cat,price=Price'"),
    ] = None,
) -> None:
    """Import any CSV/Parquet event log (and optional feature tables) into day partitions."""
    from recsys.data.importers import import_events
    from recsys.data.readers import EventColumns, FeatureColumns

    summary = import_events(
        file,
        out,
        EventColumns(
            user=user_col,
            item=item_col,
            time=time_col,
            type=type_col,
            value=value_col,
            event_id=event_id_col,
            default_type=default_type,
            type_map=type_map,
        ),
        users=FeatureColumns(file=users_file, id_col=users_id_col, mapping=users_cols)
        if users_file
        else None,
        items=FeatureColumns(file=items_file, id_col=items_id_col, mapping=items_cols)
        if items_file
        else None,
    )
    typer.echo(summary)


@import_app.command("lightgcn")
def import_lightgcn_cmd(
    train: Annotated[Path, typer.Option("--train", help="train.txt(.gz): 'user item item ...'")],
    test: Annotated[Path, typer.Option("--test", help="test.txt(.gz), same format")],
    out: Annotated[str, typer.Option("--out", help="Lake URI to write")],
    end_date: Annotated[str, typer.Option("--end-date")] = "2026-11-27",
) -> None:
    """Import a LightGCN-format split, keeping its exact train/test split."""
    from recsys.data.importers import import_lightgcn
    from recsys.data.lake import parse_date

    typer.echo(import_lightgcn(train, test, out, parse_date(end_date)))


@app.command()
def validate(
    lake: LakeOpt = "./lake",
    date: DateArg = "",
    report: Annotated[
        str | None,
        typer.Option("--report", help="Report folder (default: <lake>/reports/validation/dt=DATE)"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Gate thresholds file")] = None,
    engine: EngineOpt = "local",
) -> None:
    """Run the data-quality gate on one day's partitions; exit 1 if a check fails."""
    from recsys.config import load_config
    from recsys.data.lake import parse_date
    from recsys.validation.gate import ValidationConfig, run_gate

    if not date:
        raise typer.BadParameter("--date is required", param_hint="--date")
    result = run_gate(
        lake,
        parse_date(date),
        report,
        load_config(config, ValidationConfig),
        engine=check_engine(engine),
    )
    typer.echo(result.summary())


@app.command("build-graph")
def build_graph(
    lake: LakeOpt = "./lake",
    as_of: Annotated[str, typer.Option("--as-of", help="Snapshot date, YYYY-MM-DD")] = "",
    window_days: Annotated[
        int | None,
        typer.Option("--window-days", help="Days of events to use (default from config: 365)"),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Snapshot URI (default: <lake>/graphs/as_of=DATE)"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="GraphConfig file")] = None,
    report: Annotated[
        str | None,
        typer.Option("--report", help="Graph gate report (default: <lake>/reports/graph/dt=DATE)"),
    ] = None,
    engine: EngineOpt = "local",
) -> None:
    """Build the point-in-time weighted graph snapshot with node features (exit 1: gate failed).

    The holdout grows back from the as-of day until it holds the configured users and pairs
    (``holdout_*`` settings); the snapshot's manifest records its span and counts."""
    from recsys.config import load_config
    from recsys.data.lake import parse_date
    from recsys.graph.build import build_snapshot
    from recsys.graph.config import GraphConfig

    if not as_of:
        raise typer.BadParameter("--as-of is required", param_hint="--as-of")
    cfg = load_config(config, GraphConfig)
    if window_days is not None:
        try:
            cfg = GraphConfig.model_validate({**cfg.model_dump(), "window_days": window_days})
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--window-days") from None
    if check_engine(engine) == "spark":
        from recsys.graph.spark_build import build_snapshot_spark

        typer.echo(build_snapshot_spark(lake, parse_date(as_of), cfg, out, report))
    else:
        typer.echo(build_snapshot(lake, parse_date(as_of), cfg, out, report))
