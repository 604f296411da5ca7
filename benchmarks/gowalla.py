"""Gowalla benchmark of the GNN (feature-less LightGCN + BPR) on the standard split.

Trains on Gowalla train (a validation split carved from it selects the
checkpoint and stops early), then reports Recall@20 / NDCG@20 on test:

- ``test_at_val_best``: the checkpoint chosen on validation (the honest figure);
- ``test_best_seen``: the best test figure over the evaluations (what papers
  report, selecting on test; clearly not a fair estimate);
- wall time, and the training time at which test Recall@20 first reached the
  target (0.1830, the LightGCN paper), measured at evaluation points.

At test time the model propagates over every train interaction (the
validation pairs folded back in, as serving does) and masks them all.
Prints one JSON line per evaluation and a final JSON summary.

    python benchmarks/gowalla.py --threads 2 --config benchmarks/configs/gowalla.toml
    python benchmarks/gowalla.py --threads 2 --config benchmarks/configs/gowalla.toml \
        --set item_item_keep=300      # + the item-item term, its weight chosen on validation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from recsys.config import load_config
from recsys.data.lightgcn import LightGCNSplit, load_lightgcn
from recsys.errors import InputError
from recsys.item_item import ItemItemTerm
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.evaluator import RankingEvaluator
from recsys.training.item_item import histories
from recsys.training.loop import train
from recsys.training.tracking import Tracker
from recsys.training.training_graph import adjacency_for

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla"


def load_gowalla(folder: Path) -> tuple[LightGCNSplit, InteractionData]:
    """The split in ``folder`` (``train.txt.gz``, ``test.txt.gz``) and its interactions; a
    missing or malformed file exits with the reader's one-line message."""
    try:
        split = load_lightgcn(folder / "train.txt.gz", folder / "test.txt.gz")
    except InputError as exc:
        raise SystemExit(f"--data: {exc}") from None
    return split, InteractionData.from_lightgcn(split)


class EpochPrinter(Tracker):
    """Prints every epoch's training row (loss, lr, validation) as a JSON line."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        row = {k: round(v, 5) for k, v in metrics.items()}
        print(json.dumps({"event": "epoch", "epoch": step, **row}), flush=True)


def overrides(sets: list[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=JSON`` options as a dict (``--set``: TrainConfig fields); a malformed one exits
    with a message naming it."""
    out: dict[str, Any] = {}
    for kv in sets:
        k, eq, v = kv.partition("=")
        try:
            if not (k and eq):
                raise ValueError("expected KEY=JSON")
            out[k] = json.loads(v)
        except ValueError as exc:
            raise SystemExit(f"{option} {kv!r}: {exc}") from None
    return out


def test_evaluator(
    data: InteractionData, split: LightGCNSplit, max_users: int | None = None
) -> RankingEvaluator:
    """Recall/NDCG@20 on the published test split, full ranking, train items masked."""
    return RankingEvaluator(
        data.train_user,
        data.train_item,
        split.test_user,
        split.test_item,
        data.n_users,
        data.n_items,
        ks=(20,),
        batch_size=4096,
        max_users=max_users,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder with train/test.txt.gz")
    ap.add_argument("--config", type=Path, default=None, help="TrainConfig file (JSON/YAML/TOML)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a TrainConfig field, e.g. --set lr=0.01 --set num_layers=2",
    )
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--target", type=float, default=0.1830)
    ap.add_argument(
        "--test-max-users",
        type=int,
        default=None,
        help="monitor test on a random subset of users (exploration only)",
    )
    ap.add_argument(
        "--save-model",
        type=Path,
        default=None,
        help="write the chosen model's state_dict here (torch.save), for offline study",
    )
    ap.add_argument(
        "--save-validated",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the model at every validation to DIR/epoch-N.pt (the members of "
        "benchmarks/gowalla_mixture.py: chosen on validation, then trained to the end)",
    )
    ap.add_argument(
        "--no-test-monitor",
        action="store_true",
        help="skip the test evaluation at each validation (faster; no time-to-target)",
    )
    return ap.parse_args(argv)


def config_of(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig a run trains with: ``--config`` with ``--set``, ``--epochs`` and
    ``--threads`` over it (tracking off)."""
    cfg = load_config(args.config, TrainConfig)
    updates: dict[str, Any] = {"tracking": {"enabled": False}, **overrides(args.set)}
    if args.epochs is not None:
        updates["epochs"] = args.epochs
    if args.threads is not None:
        updates["threads"] = args.threads
    return TrainConfig.model_validate({**cfg.model_dump(), **updates})


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """One benchmark run: prints its JSON lines and returns the summary (the last line)."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    split, data = load_gowalla(args.data)
    cfg = config_of(args)
    full_adj = adjacency_for(data, cfg).to(args.device)
    test_eval = test_evaluator(data, split, args.test_max_users)

    def evaluate_test(model: FeatureLightGCN, term: ItemItemTerm | None = None) -> dict[str, float]:
        with torch.no_grad():
            ue, ie = model(full_adj)
        m = test_eval.evaluate(ue, ie, term.scorer(histories(data)) if term is not None else None)
        return {"recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"]}

    monitor_cpu = [0.0]
    monitor_wall = [0.0]
    # per epoch: wall seconds since the start (loading, the spectral init and the graph build
    # included) without the test monitoring before it
    unmonitored_wall: dict[int, float] = {}

    if args.save_validated is not None:
        args.save_validated.mkdir(parents=True, exist_ok=True)

    def on_eval(epoch: int, model: FeatureLightGCN) -> dict[str, float]:
        if args.save_validated is not None:
            torch.save(model.state_dict(), args.save_validated / f"epoch-{epoch}.pt")
        if args.no_test_monitor:
            return {}
        # CPU seconds of this process so far without the test monitoring itself (loading, the
        # spectral init, training and validation): on a shared machine, what wall time hides
        cpu = time.process_time() - monitor_cpu[0]
        c0, w0 = time.process_time(), time.perf_counter()
        unmonitored_wall[epoch] = w0 - t_start - monitor_wall[0]
        m = evaluate_test(model)
        monitor_cpu[0] += time.process_time() - c0
        monitor_wall[0] += time.perf_counter() - w0
        live = {
            "event": "test_monitor",
            "epoch": epoch,
            **{k: round(v, 5) for k, v in m.items()},
            "wall_s": round(time.perf_counter() - t_start, 1),
            "process_cpu_s": round(cpu, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(live), flush=True)
        return {f"test_{k}": v for k, v in m.items()}

    monitor = None if args.no_test_monitor and args.save_validated is None else on_eval
    result = train(data, cfg, device=args.device, on_eval=monitor, tracker=EpochPrinter())
    final = evaluate_test(result.model, result.item_item)
    if args.save_model is not None:
        torch.save(result.model.state_dict(), args.save_model)
    for row in result.history:
        if "val_recall@20" in row:
            print(json.dumps({"event": "eval", **{k: round(v, 5) for k, v in row.items()}}))
    evals = [r for r in result.history if "test_recall@20" in r]
    best_seen = max(evals, key=lambda r: r["test_recall@20"]) if evals else None
    reached = next((r for r in evals if r["test_recall@20"] >= args.target), None)
    summary = {
        "event": "summary",
        "benchmark": "gowalla",
        "config": cfg.model_dump(exclude={"tracking", "progress"}),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "epochs_run": result.epochs_run,
        "best_epoch_on_validation": result.best_epoch,
        "validation_at_best": result.best_val,
        "test_at_val_best": final,
        # with item_item_keep: the model's own scores, without the term chosen on validation
        "test_at_val_best_embeddings_only": None
        if result.item_item is None
        else evaluate_test(result.model),
        "test_best_seen_selected_on_test": None
        if best_seen is None
        else {
            "epoch": best_seen["epoch"],
            "recall@20": best_seen["test_recall@20"],
            "ndcg@20": best_seen["test_ndcg@20"],
        },
        "target_recall@20": args.target,
        "train_seconds_to_target": None if reached is None else round(reached["elapsed_s"], 1),
        "epoch_reaching_target": None if reached is None else reached["epoch"],
        # the same moment in wall time from the start, loading and initialisation included
        "wall_seconds_to_target": None
        if reached is None
        else round(unmonitored_wall[int(reached["epoch"])], 1),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "stopped_early": result.stopped_early,
        # the fold and, with blend_rank, the blend weight chosen and each weight's validation score
        "training_extra": result.extra,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(main())
