"""Where one full-graph training step's time goes on Gowalla, for the recipe and variants.

Each arm is the recipe of record (``--config``) with a few TrainConfig fields changed
(``--variant NAME=JSON``); its step is timed in four phases, the very functions the
training loop calls: the batch's rows (negatives drawn, one propagation, the hard
negatives scored, the rows located in the tables: :func:`recsys.training.steps.full_graph_rows`),
the loss (:func:`~recsys.training.steps.objective`: for plain BPR the rows' gather too),
the backward pass and the Adam update.
The arms take turns for ``--rounds`` rounds (a shared machine drifts: turns keep the
comparison fair) and each phase's median over the timed steps is printed, with the
step's and the epoch's time (steps per epoch x step) as a ratio to the first arm.

    python benchmarks/gowalla_step.py --threads 2 --config benchmarks/configs/gowalla.toml \\
        --variant 'k1={"num_layers": 1}' --variant 'batch64k={"batch_size": 65536}'

Initialisation is ``normal`` in every arm (the spectral start changes no step's cost and
takes a minute to compute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from gowalla import DEFAULT_DIR, load_gowalla, overrides

from recsys.config import load_config
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.state import build_model
from recsys.training.steps import NegativePlan, full_graph_rows, objective
from recsys.training.training_graph import TrainingGraph

PHASES = ("rows", "loss", "backward", "adam")


class Arm:
    """One configuration's model, optimiser and batches, ready to time steps."""

    def __init__(self, name: str, data: InteractionData, cfg: TrainConfig) -> None:
        self.name, self.cfg = name, cfg
        self.graph = TrainingGraph.build(data, cfg, "full", torch.device("cpu"))
        self.model = build_model(data, cfg)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.plan = NegativePlan.of(cfg, data.n_items)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.order = self.graph.batches.pos.epoch(self.gen)
        self.batch = cfg.batch_size
        self.steps_per_epoch = math.ceil(self.graph.batches.n_edges / self.batch)
        self.next = 0
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}

    def step(self, record: bool) -> None:
        s = self.next % self.steps_per_epoch
        self.next += 1
        idx = self.order[s * self.batch : (s + 1) * self.batch]
        u, p = self.graph.batches.user[idx], self.graph.batches.item[idx]
        marks = [time.perf_counter()]
        rows = full_graph_rows(self.model, self.graph, self.plan, u, p, self.gen)
        marks.append(time.perf_counter())
        loss, _, _ = objective(self.model, self.cfg, rows, self.graph.batches.log_pop)
        marks.append(time.perf_counter())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        marks.append(time.perf_counter())
        self.opt.step()
        marks.append(time.perf_counter())
        if record:
            for phase, t0, t1 in zip(PHASES, marks, marks[1:], strict=False):
                self.times[phase].append(t1 - t0)

    def medians(self) -> dict[str, float]:
        """Each phase's median over the timed steps."""
        return {p: statistics.median(v) for p, v in self.times.items()}

    def epoch_seconds(self) -> float:
        """Steps per epoch times the step (the sum of its phases' medians)."""
        return sum(self.medians().values()) * self.steps_per_epoch

    def summary(self) -> dict[str, Any]:
        med = self.medians()
        return {
            "arm": self.name,
            "phases_s": {p: round(v, 4) for p, v in med.items()},
            "step_s": round(sum(med.values()), 4),
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_s": round(self.epoch_seconds(), 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DIR, help="folder with train/test.txt.gz")
    ap.add_argument("--config", type=Path, default=None, help="TrainConfig file (the recipe)")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON TrainConfig fields")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per arm and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per arm first")
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        raise SystemExit("--steps and --rounds: at least 1; --warmup: at least 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_config(args.config, TrainConfig) if args.config else TrainConfig()
    arms_cfg: dict[str, TrainConfig] = {"recipe": base.model_copy(update={"init": "normal"})}
    for name, fields in overrides(args.variant, "--variant").items():
        if not isinstance(fields, dict):
            raise SystemExit(f"--variant {name}: expected a JSON object of TrainConfig fields")
        try:
            arms_cfg[name] = TrainConfig.model_validate(
                {**base.model_dump(), **fields, "init": "normal"}
            )
        except ValueError as exc:
            raise SystemExit(f"--variant {name}: {exc}") from None
    _, data = load_gowalla(args.data)
    arms = [Arm(name, data, cfg) for name, cfg in arms_cfg.items()]
    for arm in arms:
        for _ in range(args.warmup):
            arm.step(record=False)
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for arm in arms:
            for _ in range(args.steps):
                arm.step(record=True)
    first = arms[0].epoch_seconds()
    for arm in arms:
        row = arm.summary()
        row["epoch_vs_first"] = round(arm.epoch_seconds() / first, 3)
        row["load_average"] = [round(x, 2) for x in (*load_before, *os.getloadavg())]
        print(json.dumps({"event": "step_time", "threads": torch.get_num_threads(), **row}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
