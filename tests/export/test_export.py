"""Export: a tiny trained-shape FeatureLightGCN -> tables -> gate -> bundle -> server engine."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.artifacts import verify_artifact
from recsys.errors import GateFailed
from recsys.export.export import export_from_model
from recsys.export.gate import ExportConfig, run_gate
from recsys.export.tables import compute_tables
from recsys.graph.features import (
    ITEM_CATEGORICAL,
    ITEM_NUMERIC,
    USER_CATEGORICAL,
    USER_NUMERIC,
    FeatureSpec,
    fit_table,
)
from recsys.graph.snapshot import GraphSnapshot
from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN


def make_snapshot(n_users: int, n_items: int, edges: int, seed: int = 0) -> GraphSnapshot:
    rng = np.random.default_rng(seed)
    users = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n_users).astype(float),
            "country": rng.choice(["DE", "FR", "IT"], n_users),
        }
    )
    items = pd.DataFrame(
        {
            "item_idx": np.arange(n_items),
            "item_id": [f"p{j}" for j in range(n_items)],
            "category": rng.choice(["shoes", "food", "toys"], n_items),
            "price": rng.uniform(1, 200, n_items).round(2),
        }
    )
    spec = FeatureSpec(
        users=fit_table(users, USER_NUMERIC, USER_CATEGORICAL, 64, 1),
        items=fit_table(items, ITEM_NUMERIC, ITEM_CATEGORICAL, 64, 1),
    )
    u = rng.integers(0, n_users, edges)
    i = rng.integers(0, n_items, edges)
    # duplicates on purpose: the adjacency sums them and so must the fold-in
    w = np.log1p(rng.integers(1, 20, edges)).astype(np.float32)
    return GraphSnapshot(
        uri="memory://none",
        as_of=dt.date(2026, 11, 27),
        user_ids=np.array([f"user{j}" for j in range(n_users)]),
        item_ids=items["item_id"].to_numpy().astype(str),
        train_user=u,
        train_item=i,
        train_weight=w,
        holdout_user=np.zeros(0, np.int64),
        holdout_item=np.zeros(0, np.int64),
        user_features=spec.encode_users(users),
        item_features=spec.encode_items(items),
        feature_spec=spec,
        items=items,
    )


def make_model(snap: GraphSnapshot, dim: int = 16, layers: int = 3) -> FeatureLightGCN:
    torch.manual_seed(0)
    m = FeatureLightGCN(
        snap.n_users,
        snap.n_items,
        embedding_dim=dim,
        num_layers=layers,
        user_features=torch.from_numpy(snap.user_features),
        item_features=torch.from_numpy(snap.item_features),
        init_std=0.3,
    )
    with torch.no_grad():  # a "trained" projection, not the near-zero init
        assert m.user_proj is not None
        m.user_proj.weight.normal_(0, 0.3)
        m.user_proj.bias.normal_(0, 0.1)
    return m


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, GraphSnapshot, FeatureLightGCN]:
    snap = make_snapshot(1200, 300, 9000)
    model = make_model(snap)
    out = str(tmp_path_factory.mktemp("exp") / "bundle")
    res = export_from_model(model, snap, out, ExportConfig(k=50, latency_p99_ms=50), "t1")
    assert res.metrics["parity_users"] == 1000
    return out, snap, model


def test_gate_metrics_and_bundle(exported: tuple[str, GraphSnapshot, FeatureLightGCN]) -> None:
    out, _, _ = exported
    manifest = verify_artifact(out)
    m = manifest.extra["metrics"]
    assert m["parity_topk_mismatches"] == 0 and m["parity_max_score_diff"] <= 1e-4
    assert m["foldin_max_abs_diff"] <= 1e-4 and m["onnx_foldin_max_abs_diff"] <= 1e-4
    assert {
        "scorer.onnx",
        "user_features.onnx",
        "feature_spec.json",
        "histories.parquet",
        "popularity.parquet",
        "users.parquet",
        "items.parquet",
    } <= set(manifest.files)
    meta = json.loads(Path(out, "bundle.json").read_text())
    assert meta["has_feature_projection"] and meta["segment_feature"] == "country"
    assert meta["data_cutoff"].startswith("2026-11-28T00:00:00")
    pop = pd.read_parquet(Path(out, "popularity.parquet"))
    assert set(pop["segment"]) == {"", "DE", "FR", "IT"}


def test_served_scores_equal_torch(exported: tuple[str, GraphSnapshot, FeatureLightGCN]) -> None:
    from recsys.serving.engine import load_engine
    from recsys.serving.query import Query

    out, snap, model = exported
    engine = load_engine(out)
    adj = normalized_adjacency(
        snap.train_user, snap.train_item, snap.train_weight, snap.n_users, snap.n_items
    )
    with torch.no_grad():
        users, items = model(adj)
    for u in (0, 7, 555):
        got = engine.recommend(f"user{u}", Query(k=10))
        scores = (users[u] @ items.T).numpy()
        scores[snap.train_item[snap.train_user == u]] = -np.inf
        want = np.argsort(-scores)[:10]
        assert [it["item_id"] for it in got["items"]] == [f"p{j}" for j in want]
        np.testing.assert_allclose([it["score"] for it in got["items"]], scores[want], atol=1e-4)
    # cold start: encoded features through the exported projection == torch's projection
    feats = {"age": 33, "country": "FR"}
    got = engine.recommend("newcomer", Query(k=5, features=feats))
    x = torch.from_numpy(snap.feature_spec.encode_users(pd.DataFrame([feats])))
    with torch.no_grad():
        e = model.project_user_features(x)[0] / (model.num_layers + 1)
    want = np.argsort(-(items @ e).numpy())[:5]
    assert got["source"] == "features"
    assert [it["item_id"] for it in got["items"]] == [f"p{j}" for j in want]


def test_gate_refuses_and_publishes_nothing(tmp_path: Path) -> None:
    snap = make_snapshot(60, 40, 300)
    model = make_model(snap, dim=8, layers=2)
    tables, ref = compute_tables(model, snap)
    res = run_gate(tables, ref.users + 1e-2, ExportConfig(k=10))  # a wrong reference
    assert any(f.startswith("foldin") for f in res.failures)
    out = tmp_path / "b"
    with pytest.raises(GateFailed) as err:
        export_from_model(model, snap, str(out), ExportConfig(k=10, latency_p99_ms=1e-6), "x")
    assert "latency" in str(err.value) and err.value.exit_code == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_non_sym_model_fails_parity(tmp_path: Path) -> None:
    """A model that propagates differently from the exported fold-in is caught by the gate."""
    snap = make_snapshot(80, 40, 400)
    model = make_model(snap, dim=8, layers=2)
    orig = model.layers

    def skewed(adj):  # type: ignore[no-untyped-def]
        return [x * (1.0 + 0.05 * k) for k, x in enumerate(orig(adj))]

    tables, _ = compute_tables(model, snap)
    model.layers = skewed  # type: ignore[method-assign]
    _, ref = compute_tables(model, snap)
    res = run_gate(tables, ref.users, ExportConfig(k=10))
    assert any(f.startswith("parity") for f in res.failures)


def _write_snapshot(uri: str, snap: GraphSnapshot) -> None:
    """Publish ``snap`` as a graph snapshot artifact, through the snapshot's own writer."""
    from recsys.data.schema import EVENT_TYPES
    from recsys.graph.config import GraphConfig
    from recsys.graph.gate import GateReport, compute_stats
    from recsys.graph.snapshot import write_snapshot

    no_events = np.zeros(len(EVENT_TYPES), np.int64)
    stats = compute_stats(snap.train_user, snap.train_item, snap.n_users, snap.n_items, no_events)
    write_snapshot(uri, snap, stats=stats, gate=GateReport.of("graph", []), config=GraphConfig())


def test_cli_export_publish_and_gate_exit_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    from recsys.training.artifact import write_model_artifact
    from recsys.training.config import TrainConfig

    snap = make_snapshot(120, 60, 700)
    graph = str(tmp_path / "graph")
    _write_snapshot(graph, snap)
    model_uri = str(tmp_path / "model")
    write_model_artifact(
        model_uri, make_model(snap, dim=8, layers=2), TrainConfig(), graph, [], {}, "<html></html>"
    )
    cli = [sys.executable, "-m", "recsys.cli"]
    out = tmp_path / "bundle"
    r = subprocess.run(
        [*cli, "export", "--model", model_uri, "--out", str(out), "--k", "20"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    manifest = verify_artifact(str(out))
    assert set(manifest.inputs) == {"model", "graph"}
    assert manifest.extra["lineage"]["graph_uri"] == graph
    version = json.loads((out / "bundle.json").read_text())["version"]
    assert version.startswith("m-") and version[2:] == manifest.inputs["model"].sha256[:12]
    r = subprocess.run(
        [*cli, "publish", "--bundle", str(out), "--registry", str(tmp_path / "reg")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and version in r.stdout
    cfg = tmp_path / "strict.json"
    cfg.write_text(json.dumps({"latency_p99_ms": 1e-6}))
    r = subprocess.run(
        [*cli, "export", "--model", model_uri, "--out", str(tmp_path / "b2"), "--config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "latency" in r.stderr
    assert not (tmp_path / "b2").exists()


def test_edge_types_are_or_aggregated_for_duplicate_pairs() -> None:
    from recsys.bundle import TYPE_BITS
    from recsys.export.tables import aggregate_edges

    u, i, w, t = aggregate_edges(
        np.array([0, 0, 1]),
        np.array([3, 3, 2]),
        np.array([1.0, 2.0, 4.0], np.float32),
        np.array([TYPE_BITS["view"], TYPE_BITS["purchase"], TYPE_BITS["click"]]),
    )
    assert u.tolist() == [0, 1] and i.tolist() == [3, 2] and w.tolist() == [3.0, 4.0]
    assert t.tolist() == [TYPE_BITS["view"] | TYPE_BITS["purchase"], TYPE_BITS["click"]]
