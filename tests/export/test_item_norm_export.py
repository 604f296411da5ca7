"""A model whose item table is rescaled by its norm (``item_norm_power``): artifact -> export
gate -> bundle, the rescaled table served and the fold-in exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_export import _write_snapshot, make_model, make_snapshot  # tests/export on sys.path

from recsys.bundle import read_bundle
from recsys.export.export import export_model
from recsys.export.gate import ExportConfig
from recsys.export.tables import compute_tables
from recsys.graph.snapshot import load_snapshot
from recsys.training.artifact import load_model, write_model_artifact
from recsys.training.config import TrainConfig


def test_the_rescaled_table_is_exported_and_the_gate_holds(tmp_path: Path) -> None:
    snap = make_snapshot(400, 120, 3000, seed=5)
    graph = str(tmp_path / "graph")
    _write_snapshot(graph, snap)
    model = make_model(snap, dim=8, layers=2)
    model.item_norm_power = -0.7
    model_uri = str(tmp_path / "model")
    write_model_artifact(model_uri, model, TrainConfig(), graph, [], {}, "<html></html>")
    loaded = load_model(model_uri)
    assert loaded.model.item_norm_power == -0.7
    assert loaded.info["architecture"]["item_norm_power"] == -0.7

    out = tmp_path / "bundle"
    res = export_model(model_uri, str(out), ExportConfig(k=20, latency_p99_ms=100))
    assert res.metrics["parity_topk_mismatches"] == 0
    assert res.metrics["foldin_max_abs_diff"] <= 1e-4

    loaded.model.item_norm_power = 0.0
    _, plain_ref = compute_tables(loaded.model, load_snapshot(graph))  # the graph export read
    plain = plain_ref.items
    served = read_bundle(str(out)).item_final
    norms = np.linalg.norm(plain, axis=1, keepdims=True)
    np.testing.assert_allclose(served, plain * norms**0.7, rtol=1e-5, atol=1e-6)
    # the rescaling moved the ranking: the served table is not the plain one up to a scale
    assert not np.allclose(served / np.linalg.norm(served), plain / np.linalg.norm(plain))
