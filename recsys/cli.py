"""The one command line: ``recsys``. Airflow tasks, containers and people all call it.

Exit codes: 0 success, 1 a gate failed, 2 usage or input error. Errors that are
the user's to fix print one readable message, never a traceback.
Heavy modules are imported inside each command so that ``recsys serve`` never
imports torch and ``recsys --help`` is instant.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from recsys.errors import RecsysError
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


def _engine(name: str) -> str:
    if name not in ("local", "spark"):
        raise typer.BadParameter(f"{name!r}: expected local or spark", param_hint="--engine")
    return name


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    setup_logging(log_level)


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
        engine=_engine(engine),
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
    if _engine(engine) == "spark":
        from recsys.graph.spark_build import build_snapshot_spark

        typer.echo(build_snapshot_spark(lake, parse_date(as_of), cfg, out, report))
    else:
        typer.echo(build_snapshot(lake, parse_date(as_of), cfg, out, report))


@app.command()
def serve(
    bundle: Annotated[
        str | None,
        typer.Option("--bundle", help="Bundle URI to serve (written by `recsys export`)"),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="Registry URI: serve and hot-reload its production.json"),
    ] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    live_store: Annotated[
        str | None,
        typer.Option(
            "--live-store",
            help="Live state: memory (one replica, default; env RECSYS_LIVE_STORE) or "
            "redis://host:port/db | rediss://... shared by every replica "
            "(key: RECSYS_LIVE_STORE_PASSWORD)",
        ),
    ] = None,
    event_log: Annotated[
        str | None,
        typer.Option(
            "--event-log",
            help="Durable log of the memory live store: folder of dt=YYYY-MM-DD JSONL files, "
            "or a single .jsonl file (default $RECSYS_EVENT_LOG, else ./serving-events)",
        ),
    ] = None,
    reload_interval: Annotated[
        float, typer.Option("--reload-interval", help="Seconds between registry checks")
    ] = 2.0,
    config: Annotated[Path | None, typer.Option("--config", help="ServeConfig file")] = None,
) -> None:
    """Serve recommendations over HTTP (FastAPI + onnxruntime; no torch). Key: RECSYS_API_KEY."""
    from recsys.config import Settings, load_config
    from recsys.serving.app import ServeConfig
    from recsys.serving.app import serve as run_server

    if bool(bundle) == bool(registry):
        raise typer.BadParameter("give exactly one of --bundle or --registry")
    settings = Settings()
    cfg = load_config(config, ServeConfig).model_copy(
        update={
            "bundle": bundle,
            "registry": registry,
            "live_store": live_store or settings.live_store,
            "live_store_password": settings.live_store_password,
            "live_store_auth": settings.live_store_auth,
            "event_log": event_log or settings.event_log,
            "reload_interval_s": reload_interval,
            "api_key": settings.api_key,
        }
    )
    run_server(cfg, host=host, port=port)


@app.command()
def export(
    model: Annotated[str, typer.Option("--model", help="Trained model artifact URI")],
    out: Annotated[str, typer.Option("--out", help="Bundle URI to write")],
    k: Annotated[int, typer.Option("--k", help="Top-K checked by the export gate")] = 100,
    version: Annotated[
        str | None,
        typer.Option("--version", help="Model version named by the server (default: from hashes)"),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="ExportConfig file")] = None,
    report: Annotated[
        str | None,
        typer.Option("--report", help="Write the export gate's report.json here (pass or fail)"),
    ] = None,
) -> None:
    """Export a trained model to an ONNX serving bundle; exit 1 if the export gate fails."""
    from recsys.config import load_config
    from recsys.export.export import export_model
    from recsys.export.gate import ExportConfig

    cfg = load_config(config, ExportConfig).model_copy(update={"k": k})
    typer.echo(export_model(model, out, cfg, version=version, report=report).summary())


@app.command("publish")
def publish_cmd(
    bundle: Annotated[str, typer.Option("--bundle", help="Bundle URI to make production")],
    registry: Annotated[str, typer.Option("--registry", help="Registry URI")] = "./registry",
    version: Annotated[str | None, typer.Option("--version")] = None,
) -> None:
    """Point the registry's production.json at a bundle (servers hot-reload it)."""
    from recsys.serving.registry import publish

    entry = publish(registry, bundle, version)
    typer.echo(f"production: {entry.version} {entry.bundle_uri}")


@app.command("rollback")
def rollback_cmd(
    registry: Annotated[str, typer.Option("--registry", help="Registry URI")] = "./registry",
) -> None:
    """Make the previous production bundle current again."""
    from recsys.serving.registry import rollback

    entry = rollback(registry)
    typer.echo(f"production: {entry.version} {entry.bundle_uri}")


@app.command()
def train(
    graph: Annotated[str, typer.Option("--graph", help="Graph snapshot URI")],
    out: Annotated[str, typer.Option("--out", help="Model artifact URI to write")],
    config: Annotated[Path | None, typer.Option("--config", help="TrainConfig file")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", help="Resumable checkpoint URI (default: <out>.checkpoint)"),
    ] = None,
    init_from: Annotated[
        str | None,
        typer.Option(
            "--init-from",
            help="Warm start from this model artifact (production's): its layer 0 for known "
            "users and products, the warm schedule; cold, with the reason recorded, when it "
            "cannot apply",
        ),
    ] = None,
) -> None:
    """Train the GNN (feature-aware LightGCN, BPR) on a graph snapshot; resumes if interrupted.

    Under ``torchrun --nproc_per_node N`` it trains data-parallel (gloo on CPU, NCCL on CUDA).
    """
    import json

    from recsys.config import load_config
    from recsys.errors import InputError
    from recsys.training.artifact import require_model
    from recsys.training.config import TrainConfig

    if device not in {"cpu", "cuda"} and not device.startswith("cuda:"):
        raise InputError(f"--device must be cpu or cuda, got {device!r}")
    if init_from is not None:
        try:  # said before torch, data-parallel set-up or the snapshot are touched
            require_model(init_from)
        except InputError as exc:
            raise InputError(f"--init-from: {exc}") from None
    from recsys.training.run import train_on_snapshot

    summary = train_on_snapshot(
        graph, out, load_config(config, TrainConfig), device, checkpoint, init_from
    )
    typer.echo(json.dumps(summary, indent=2, default=float))


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", help="Model artifact URI")],
    graph: Annotated[str, typer.Option("--graph", help="Graph snapshot URI (its holdout)")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda")] = "cpu",
    baselines: Annotated[
        str,
        typer.Option("--baselines", help="Comma-separated: popularity, mf-bpr, ease, gf-cf"),
    ] = "popularity,mf-bpr,ease,gf-cf",
    production_bundle: Annotated[
        str | None,
        typer.Option(
            "--production-bundle", help="A serving bundle scored on the same users (those it knows)"
        ),
    ] = None,
    per_user: Annotated[
        str | None,
        typer.Option("--per-user", help="Write every user's metrics (Parquet) to this URI"),
    ] = None,
) -> None:
    """Evaluate a model, the baselines (and a production bundle) on the holdout, per user.

    Each metric comes with its 95 % paired-bootstrap interval over the holdout users
    (``ndcg@20`` and ``ndcg@20_ci`` in ``--json``), with the holdout's users, pairs and span.
    """
    import io
    import json

    from recsys.storage import write_bytes_atomic
    from recsys.training.evaluate import evaluate_on_snapshot

    names = tuple(b.strip() for b in baselines.split(",") if b.strip())
    result = evaluate_on_snapshot(
        model, graph, device, baselines=names, production_bundle=production_bundle
    )
    if per_user:
        buf = io.BytesIO()
        result.scores.to_frame().to_parquet(buf, index=False)
        write_bytes_atomic(per_user, buf.getvalue())
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=float))
        return
    meta = summary["_meta"]
    typer.echo(
        f"holdout: {meta['holdout_users']} users, {meta['holdout_pairs']} pairs"
        + (
            f", {meta['holdout_days']} day(s) from {meta['holdout_start']}"
            if "holdout_days" in meta
            else ""
        )
    )
    for name, metrics in summary.items():
        if name.startswith("_"):
            continue
        shown = ", ".join(
            f"{k}={metrics[k]:.4f} [{metrics[k + '_ci'][0]:.4f}, {metrics[k + '_ci'][1]:.4f}]"
            for k in ("recall@20", "ndcg@20")
            if k in metrics
        )
        typer.echo(f"{name:<12} {shown} ({metrics['users']} users)")


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


if __name__ == "__main__":
    main()
