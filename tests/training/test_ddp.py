"""Data-parallel ``recsys train`` under ``torchrun`` (2 processes, gloo, CPU) vs one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recsys.artifacts import verify_artifact
from recsys.cli import app

DAY = "2026-11-27"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    lake = str(root / "lake")
    runner = CliRunner()
    # the synthetic shop's users follow planted segment tastes: a GNN beats popularity clearly
    r = runner.invoke(
        app,
        [
            "synth",
            "--out",
            lake,
            "--users",
            "1000",
            "--items",
            "150",
            "--days",
            "5",
            "--end-date",
            DAY,
            "--seed",
            "5",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["build-graph", "--lake", lake, "--as-of", DAY])
    assert r.exit_code == 0, r.output
    cfg = root / "train.json"
    cfg.write_text(
        json.dumps(
            {
                "epochs": 12,
                "embedding_dim": 16,
                "eval_every": 3,
                "progress": False,
                "tracking": {"enabled": False},
            }
        )
    )
    return {"root": root, "graph": Path(lake) / "graphs" / f"as_of={DAY}", "cfg": cfg}


def _train(launcher: list[str], setup: dict[str, Path], name: str) -> tuple[dict[str, Any], str]:
    out = setup["root"] / name
    cmd = [
        *launcher,
        "-m",
        "recsys.cli",
        "train",
        "--graph",
        str(setup["graph"]),
        "--out",
        str(out),
        "--config",
        str(setup["cfg"]),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env=env, cwd=setup["root"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    verify_artifact(str(out))
    assert not Path(str(out) + ".checkpoint").exists()
    return json.loads((out / "metrics.json").read_text()), proc.stderr


def test_torchrun_two_processes_match_one_process(setup: dict[str, Path]) -> None:
    single, _ = _train([sys.executable], setup, "single")
    ddp, log = _train(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        setup,
        "ddp",
    )
    # it really ran as two ranks of one gloo group, and only rank 0 published
    assert "rank 0 of 2 (gloo)" in log and "rank 1 of 2 (gloo)" in log
    assert log.count("model published at") == 1
    got, ref = ddp["holdout"]["recall@20"], single["holdout"]["recall@20"]
    pop = ddp["baselines"]["popularity"]["recall@20"]
    print(f"recall@20: ddp={got:.3f} single={ref:.3f} popularity={pop:.3f}")
    assert abs(got - ref) <= 0.04, (got, ref)
    assert got >= pop + 0.1 and ref >= pop + 0.1, (got, ref, pop)


REPLICA_SCRIPT = """
import hashlib, io, sys
import torch
from recsys.training.config import TrainConfig
from recsys.training.ddp import init_distributed, shutdown
from recsys.training.loop import train
from tests.training.planted import planted

ctx = init_distributed("cpu")
p = planted(n_users=200, n_items=120, features=True, seed=4)
cfg = TrainConfig.model_validate({"epochs": 3, "embedding_dim": 8, "eval_every": 3,
                                  "init": "normal", "progress": False,
                                  "tracking": {"enabled": False}})
lines = []
for mode in ("full", "sampled"):
    result = train(p.data, cfg.model_copy(update={"mode": mode}), dist=ctx)
    buf = io.BytesIO()
    # the last epoch's weights (not the best state, which only rank 0 keeps)
    torch.save(result.model.state_dict(), buf)
    lines.append(hashlib.sha256(buf.getvalue()).hexdigest() + " " + str(result.history[-1]["loss"]))
with open(f"{sys.argv[1]}/rank{ctx.rank}.txt", "w") as f:
    f.write("\\n".join(lines))
shutdown(ctx)
"""


def test_ranks_stay_identical_replicas(tmp_path: Path) -> None:
    """Each rank draws its own negatives on its own slice; the averaged gradients keep the
    replicas bit-identical, and rank 0 alone validates."""
    script = tmp_path / "replica.py"
    script.write_text(REPLICA_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(root)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = ((tmp_path / f"rank{r}.txt").read_text().splitlines() for r in (0, 1))
    assert len(r0) == 2  # full-graph and neighbour-sampled modes
    assert r0 == r1  # same weights and the same (all-reduced) epoch loss on both ranks
