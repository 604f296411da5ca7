"""Commands that serve a bundle and move the registry's production pointer: serve, publish,
rollback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.app import app


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
