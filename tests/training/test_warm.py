"""Warm start from production: yesterday's layer 0 carried into today's model, or a cold
start that says why."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from typer.testing import CliRunner

from recsys.artifacts import read_manifest
from recsys.cli import app
from recsys.data.lake import read_partition, write_partition
from recsys.data.schema import ITEMS
from recsys.graph.build import build_snapshot
from recsys.graph.config import GraphConfig
from recsys.graph.snapshot import load_snapshot
from recsys.training.artifact import load_model
from recsys.training.config import TrainConfig
from recsys.training.run import train_on_snapshot
from recsys.training.warm import plan_warm_start

DAY1, DAY2 = dt.date(2026, 11, 26), dt.date(2026, 11, 27)
SMALL = TrainConfig(
    epochs=3,
    warm_epochs=2,
    embedding_dim=8,
    batch_size=256,
    eval_every=1,
    progress=False,
    tracking={"enabled": False},
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("warm")
    lake = str(root / "lake")
    r = CliRunner().invoke(
        app,
        [
            "synth",
            "--out",
            lake,
            "--users",
            "300",
            "--items",
            "90",
            "--days",
            "5",
            "--end-date",
            DAY2.isoformat(),
        ],
    )
    assert r.exit_code == 0, r.output
    g1 = build_snapshot(lake, DAY1)
    model = str(root / "model1")
    train_on_snapshot(g1, model, SMALL)
    return {"lake": lake, "g1": g1, "model": model, "root": str(root)}


def test_known_nodes_start_from_production_layer0(shop: dict[str, str]) -> None:
    g2 = build_snapshot(shop["lake"], DAY2)
    s1, s2 = load_snapshot(shop["g1"]), load_snapshot(g2)
    assert s2.n_users > s1.n_users  # the day brought new shoppers
    warm = plan_warm_start(shop["model"], s2, SMALL)
    assert warm.applied, warm.reason
    assert warm.users_known == s1.n_users and warm.users_new == s2.n_users - s1.n_users
    prev = load_model(shop["model"]).model
    users = warm.state["user_embedding.weight"]
    # stable id maps: known users keep their rows, new ones start at zero (features alone)
    torch.testing.assert_close(users[: s1.n_users], prev.user_embedding.weight)
    assert not users[s1.n_users :].any()
    # before any step, a known user's layer 0 on production's features is production's own
    from recsys.training.data import InteractionData
    from recsys.training.state import init_state

    state = init_state(InteractionData.from_snapshot(s2), SMALL, torch.device("cpu"), warm)
    new = state.model
    x = torch.from_numpy(s1.user_features)
    with torch.no_grad():
        mine = new.user_embedding.weight[: s1.n_users] + new.project_user_features(x)
        theirs, _ = prev.layer0()
    torch.testing.assert_close(mine, theirs)


def test_train_init_from_records_the_warm_start(shop: dict[str, str], tmp_path: Path) -> None:
    g2 = build_snapshot(shop["lake"], DAY2, out=str(Path(shop["root"]) / "g2b"))
    cfg = tmp_path / "train.json"
    cfg.write_text(SMALL.model_dump_json())
    out = str(tmp_path / "model2")
    r = CliRunner().invoke(
        app,
        ["train", "--graph", g2, "--out", out, "--config", str(cfg), "--init-from", shop["model"]],
    )
    assert r.exit_code == 0, r.output
    start = json.loads(r.output[r.output.index("{") :])["start"]
    assert start["mode"] == "warm" and start["source"] == shop["model"]
    info = load_model(out).info
    assert info["start"]["mode"] == "warm"
    assert read_manifest(out).counts["epochs"] <= SMALL.warm_epochs  # the warm schedule


def test_a_feature_width_change_falls_back_cold_with_the_reason(
    shop: dict[str, str], tmp_path: Path
) -> None:
    # a new product category, and a graph that grows its vocabulary for it: a wider encoding
    lake = shop["lake"]
    items = read_partition(lake, ITEMS, DAY1).to_pandas()
    items.loc[items.index[:5], "category"] = "brand-new-category"
    write_partition(lake, ITEMS, DAY2, pa.Table.from_pandas(items, preserve_index=False))
    cfg = GraphConfig.model_validate({"features": {"grow_vocab": True}})
    root = Path(shop["root"]) / "graphs-grow"
    g1 = build_snapshot(lake, DAY1, cfg, out=str(root / f"as_of={DAY1}"))
    g2 = build_snapshot(lake, DAY2, cfg, out=str(root / f"as_of={DAY2}"))
    assert read_manifest(g2).extra["feature_spec"]["width_changed"] is True
    assert g1
    out = str(tmp_path / "model3")
    summary = train_on_snapshot(g2, out, SMALL, init_from=shop["model"])
    assert summary["start"]["mode"] == "cold"
    assert "feature width changed" in summary["start"]["reason"]
    assert load_model(out).info["start"]["reason"] == summary["start"]["reason"]
    assert np.isfinite(summary["validation"][f"recall@{SMALL.eval_k}"])


def test_the_dag_warm_starts_from_the_latest_earlier_day(tmp_path: Path) -> None:
    from recsys.artifacts import write_artifact
    from recsys.orchestration.train_step import previous_model

    lake = str(tmp_path / "lake")
    assert previous_model(lake, DAY2) is None
    for day, published in (
        (DAY1 - dt.timedelta(days=1), True),
        (DAY1, True),
        (DAY2, True),
        (DAY2 + dt.timedelta(days=1), False),
    ):
        folder = tmp_path / "lake" / "models" / f"as_of={day}"
        if published:
            with write_artifact(str(folder), "model") as draft:
                draft.write_bytes("model.pt", day.isoformat().encode())
        else:
            folder.mkdir(parents=True)
    # the day before, never the day itself (reruns start alike) nor a later one (backfills)
    assert previous_model(lake, DAY2) == f"{lake}/models/as_of={DAY1}"
    assert previous_model(lake, DAY2 + dt.timedelta(days=2)) == f"{lake}/models/as_of={DAY2}"
    # a model its gate refused is passed over; an undecided one is not
    from recsys.reports import MODEL, Check, GateReport, report_uri, write_gate_report

    def gate(day: dt.date, status: str) -> None:
        check = Check(name="beats_popularity", status=status, rule="r", observed="o")
        write_gate_report(report_uri(lake, MODEL, day), GateReport.of("model", [check]))

    gate(DAY1, "failed")
    gate(DAY2, "undecided")
    assert previous_model(lake, DAY2) == f"{lake}/models/as_of={DAY1 - dt.timedelta(days=1)}"
    assert previous_model(lake, DAY2 + dt.timedelta(days=2)) == f"{lake}/models/as_of={DAY2}"
    # a damaged model (a file that no longer matches its manifest) is passed over too
    (tmp_path / "lake" / "models" / f"as_of={DAY2}" / "model.pt").write_bytes(b"torn")
    later = DAY2 + dt.timedelta(days=2)
    assert previous_model(lake, later) == f"{lake}/models/as_of={DAY1 - dt.timedelta(days=1)}"


def test_init_from_a_path_that_is_not_a_model_is_refused_before_training(
    shop: dict[str, str], tmp_path: Path
) -> None:
    import subprocess
    import sys

    out = tmp_path / "model"
    for bad in (str(tmp_path / "typo"), shop["g1"]):  # missing; an artifact, not a model
        r = subprocess.run(
            [sys.executable, "-m", "recsys.cli", "train", "--graph", shop["g1"],
             "--out", str(out), "--init-from", bad],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert r.returncode == 2 and "--init-from" in r.stderr and bad in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not out.exists()
