"""``recsys evaluate``: every metric with its interval, the holdout described, and the
production bundle scored on the same users (those it knows), end to end on a synthetic shop."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys.cli import app

END = dt.date(2026, 11, 27)
OLD = END - dt.timedelta(days=3)
TRAIN = {
    "epochs": 2,
    "embedding_dim": 8,
    "batch_size": 512,
    "eval_every": 5,
    "progress": False,
    "tracking": {"enabled": False},
}


def _ok(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A shop with a model of today and the bundle of a model from three days ago."""
    root = tmp_path_factory.mktemp("shop")
    lake = str(root / "lake")
    _ok(
        "synth",
        "--out",
        lake,
        "--users",
        "300",
        "--items",
        "80",
        "--days",
        "8",
        "--end-date",
        END.isoformat(),
        "--seed",
        "5",
    )
    cfg = root / "graph.json"
    cfg.write_text(json.dumps({"holdout_min_users": 0, "holdout_min_pairs": 0}))
    train = root / "train.json"
    train.write_text(json.dumps(TRAIN))
    out = {"lake": lake}
    for day, name in ((OLD, "old"), (END, "today")):
        graph = f"{lake}/graphs/as_of={day.isoformat()}"
        _ok("build-graph", "--lake", lake, "--as-of", day.isoformat(), "--config", str(cfg))
        _ok("train", "--graph", graph, "--out", str(root / name), "--config", str(train))
        out[f"{name}_graph"], out[f"{name}_model"] = graph, str(root / name)
    out["bundle"] = str(root / "bundle")
    _ok(
        "export",
        "--model",
        out["old_model"],
        "--out",
        out["bundle"],
        "--k",
        "10",
        "--report",
        str(root / "export-report"),
    )
    return out


def test_json_reports_each_metric_with_its_interval_and_the_holdout(
    shop: dict[str, str], tmp_path: Path
) -> None:
    per_user = str(tmp_path / "per_user.parquet")
    out = _ok(
        "evaluate",
        "--model",
        shop["today_model"],
        "--graph",
        shop["today_graph"],
        "--json",
        "--baselines",
        "popularity",
        "--production-bundle",
        shop["bundle"],
        "--per-user",
        per_user,
    )
    doc = json.loads(out[out.index("{\n") :])  # the log lines come first
    meta = doc["_meta"]
    assert meta["holdout_days"] == 1 and meta["holdout_start"] == END.isoformat()
    assert meta["holdout_users"] > 0 and meta["holdout_pairs"] >= meta["holdout_users"]
    assert meta["bootstrap"] == {
        "resamples": 2000,
        "confidence": 0.95,
        "seed": 0,
        "paired_by": "user",
    }
    assert set(doc) == {"gnn", "popularity", "production", "_meta"}
    for model in ("gnn", "popularity", "production"):
        m = doc[model]
        for metric in ("recall@20", "ndcg@20", "ndcg@10", "hit_rate@50"):
            low, high = m[f"{metric}_ci"]
            assert low <= m[metric] <= high, (model, metric)
    assert doc["gnn"]["users"] == doc["popularity"]["users"] == meta["holdout_users"]
    # users first seen after the production bundle's snapshot are the ones it cannot score
    unknown = meta["production_cannot_score"]
    assert unknown > 0, "some holdout users are new since the bundle's snapshot"
    assert doc["production"]["users"] == meta["holdout_users"] - unknown
    frame = pd.read_parquet(per_user)
    assert len(frame) == meta["holdout_users"]
    assert int(frame["production/ndcg@20"].isna().sum()) == unknown
    assert np.isclose(frame["gnn/ndcg@20"].mean(), doc["gnn"]["ndcg@20"])
    old_users = set(pd.read_parquet(f"{shop['bundle']}/users.parquet")["user_id"])
    unscored = set(frame.loc[frame["production/ndcg@20"].isna(), "user_id"])
    assert unscored == set(frame["user_id"]) - old_users


def test_the_console_shows_intervals_and_bad_baselines_are_named(shop: dict[str, str]) -> None:
    text = _ok(
        "evaluate",
        "--model",
        shop["today_model"],
        "--graph",
        shop["today_graph"],
        "--baselines",
        "popularity",
    )
    assert "holdout:" in text and "1 day(s) from 2026-11-27" in text
    assert "gnn" in text and "ndcg@20=" in text and "[" in text and "users)" in text
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            shop["today_model"],
            "--graph",
            shop["today_graph"],
            "--baselines",
            "popularity,xgboost",
        ],
    )
    assert r.exit_code != 0 and "xgboost" in str(r.exception or r.output)
