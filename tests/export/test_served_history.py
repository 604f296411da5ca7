"""The bundle serves every event through the as-of day: holdout days folded into the
histories, and users first seen in those days served from their history alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import torch

from recsys.export.export import export_from_model
from recsys.export.gate import ExportConfig
from recsys.graph.build import build_snapshot
from recsys.graph.snapshot import load_snapshot
from recsys.models.lightgcn import FeatureLightGCN
from recsys.serving.engine import load_engine
from recsys.serving.query import Query
from tests.graph.conftest import END, random_events, small_config, ts, write_dims, write_events


def test_holdout_only_user_is_served_from_the_bundle(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    write_events(lake, random_events(40, 30, 5, 200))
    write_dims(lake, END - dt.timedelta(days=4), 40, 30)
    write_events(
        lake,
        [  # a shopper whose only events are on the as-of day (the holdout)
            ("newbie", "i004", "purchase", None, ts(END, 8)),
            ("newbie", "i007", "add_to_cart", None, ts(END, 9)),
            ("u001", "i011", "purchase", None, ts(END, 23)),
        ],
        prefix="late",
    )
    snap = load_snapshot(build_snapshot(lake, END, small_config(holdout_days=1)))
    assert "newbie" not in set(snap.user_ids)
    torch.manual_seed(0)
    model = FeatureLightGCN(snap.n_users, snap.n_items, embedding_dim=8, num_layers=2, init_std=0.3)
    out = str(tmp_path / "bundle")
    export_from_model(model, snap, out, ExportConfig(k=10, latency_p99_ms=1e3), "v1")
    engine = load_engine(out)

    got = engine.recommend("newbie", Query(k=5))
    assert got["source"] == "history" and len(got["items"]) == 5
    ids = [it["item_id"] for it in got["items"]]
    assert not {"i004", "i007"} & set(ids)  # seen in the holdout days: excluded
    assert {it["because"]["item_id"] for it in got["items"]} <= {"i004", "i007"}
    # the embedding is exactly the fold-in of that history
    u = engine.user_index["newbie"]
    assert not engine.user_e0[u].any()
    # a model user's holdout-day purchase is in their served history, so it is excluded
    hist = engine.history("u001")
    assert hist is not None
    assert engine.item_index["i011"] in set(hist[0].tolist())
    assert "i011" not in [it["item_id"] for it in engine.recommend("u001", Query(k=29))["items"]]
    assert np.isfinite([it["score"] for it in got["items"]]).all()
