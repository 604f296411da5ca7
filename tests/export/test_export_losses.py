"""The export gate passes for a model trained with each loss.

Every loss scores with the model's dot product, so the exact fold-in and the
ONNX scorer are the same whatever the model was trained with: the gate's
parity (onnxruntime top-K and scores vs torch) and fold-in exactness (every
training user's embedding reproduced from their history) must hold for each.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_export import make_snapshot  # tests/export is on sys.path (no __init__.py)

from recsys.export.gate import ExportConfig, run_gate
from recsys.export.tables import compute_tables
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.config import TrackingConfig, TrainConfig
from recsys.training.data import InteractionData
from recsys.training.loop import train

LOSSES: dict[str, dict[str, Any]] = {
    "bpr": {"loss": "bpr", "hard_negative_candidates": 4, "items_per_hard_candidate": 1},
    "softmax-in-batch-cosine": {"loss": "softmax"},
    "softmax-uniform-dot": {
        "loss": "softmax",
        "softmax_sampler": "uniform",
        "cosine": False,
        "temperature": 1.0,
    },
    "softmax-adaptive-logq": {
        "loss": "softmax",
        "temperature_mode": "adaptive",
        "logq_correction": True,
    },
    "softmax-contrastive": {"loss": "softmax", "contrastive_weight": 0.1},
}


TWO_EPOCHS: dict[str, Any] = {
    "embedding_dim": 16,
    "num_layers": 3,
    "epochs": 2,
    "eval_every": 1,
    "batch_size": 512,
    "progress": False,
    "threads": 1,
    "tracking": TrackingConfig(enabled=False),
}
"""A small model of two epochs: the blend's and the mixture's members."""


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gate_passes_for_a_model_trained_with_each_loss(name: str) -> None:
    snap = make_snapshot(300, 120, 2500, seed=3)  # user and item features, weighted duplicates
    cfg = TrainConfig.model_validate(
        {
            "embedding_dim": 16,
            "num_layers": 2,
            "epochs": 3,
            "eval_every": 1,
            "batch_size": 512,
            "softmax_negatives": 64,
            "progress": False,
            "threads": 1,
            "tracking": TrackingConfig(enabled=False),
            **LOSSES[name],
        }
    )
    result = train(InteractionData.from_snapshot(snap), cfg)
    assert result.epochs_run == 3
    tables, ref = compute_tables(result.model, snap)
    gate = run_gate(tables, ref.users, ExportConfig(k=20, parity_users=300, latency_p99_ms=1000))
    assert gate.failures == [], gate.failures
    m = gate.metrics
    assert m["parity_topk_mismatches"] == 0 and m["parity_max_score_diff"] <= 1e-4
    assert m["foldin_max_abs_diff"] <= 1e-4 and m["onnx_foldin_max_abs_diff"] <= 1e-4


def test_gate_passes_for_a_gnn_blended_with_a_graph_filter() -> None:
    from recsys.training.blend import blended
    from recsys.training.training_graph import adjacency_for

    snap = make_snapshot(300, 120, 2500, seed=4)
    data = InteractionData.from_snapshot(snap)
    cfg = TrainConfig.model_validate({**TWO_EPOCHS, "blend_rank": 12})
    model = train(data, cfg).model
    mixed = blended(model, data, adjacency_for(data, cfg), cfg, weight=1.0)
    assert mixed.embedding_dim == 16 + 12
    assert_widened_model_passes(mixed, snap)


def test_gate_passes_for_a_mixture_of_two_trained_gnns() -> None:
    from recsys.training.mixture import mixture
    from recsys.training.training_graph import adjacency_for

    snap = make_snapshot(300, 120, 2500, seed=5)  # features: both projections side by side
    data = InteractionData.from_snapshot(snap)
    a = train(data, TrainConfig.model_validate(TWO_EPOCHS)).model
    b_cfg = TrainConfig.model_validate({**TWO_EPOCHS, "embedding_dim": 8, "loss": "softmax"})
    b = train(data, b_cfg).model
    mixed = mixture(a, b, 0.5, adjacency_for(data, b_cfg), seed=0)
    assert mixed.embedding_dim == 16 + 8
    assert_widened_model_passes(mixed, snap)


def assert_widened_model_passes(model: FeatureLightGCN, snap: Any) -> None:
    """The export gate on a model widened past its training (a blend, a mixture): no failure,
    exact fold-in, the ONNX top-K equal to torch's."""
    tables, ref = compute_tables(model, snap)
    gate = run_gate(tables, ref.users, ExportConfig(k=20, parity_users=300, latency_p99_ms=1000))
    assert gate.failures == [], gate.failures
    assert gate.metrics["foldin_max_abs_diff"] <= 1e-4
    assert gate.metrics["parity_topk_mismatches"] == 0
