"""Commands that train and judge a model and export it: train, evaluate, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.app import app
from recsys.errors import InputError


def check_device(device: str) -> None:
    """``--device``: ``cpu``, ``cuda`` or ``cuda:N``, and a CUDA device must exist here (an
    input error, said before anything is read or written, not torch's traceback)."""
    if device == "cpu":
        return
    index = "0" if device == "cuda" else device.removeprefix("cuda:")
    if not (device.startswith("cuda") and index.isdigit()):
        raise InputError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            f"--device {device}: no CUDA device on this machine (torch {torch.__version__}); "
            "use --device cpu"
        )
    if int(index) >= torch.cuda.device_count():
        raise InputError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )


@app.command()
def train(
    graph: Annotated[str, typer.Option("--graph", help="Graph snapshot URI")],
    out: Annotated[str, typer.Option("--out", help="Model artifact URI to write")],
    config: Annotated[Path | None, typer.Option("--config", help="TrainConfig file")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N")] = "cpu",
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
    from recsys.training.artifact import require_model
    from recsys.training.config import TrainConfig

    check_device(device)
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
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N")] = "cpu",
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

    check_device(device)
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
