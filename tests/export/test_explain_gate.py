"""The export gate's ``explain`` check: the scorer's explanation outputs agree with numpy's
contributions, and a scorer whose explanations are wrong (but whose scores are right) fails."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

import recsys.scorer as scorer_mod
from recsys.export.gate import ExportConfig, foldin_numpy, run_gate
from recsys.export.synthetic import synthetic_tables

CFG = ExportConfig(k=10, latency_p99_ms=1e3, latency_queries=10, explain_users=40)


def test_gate_checks_the_explanations() -> None:
    t = synthetic_tables(n_users=60, n_items=50, edges_per_user=6, seed=7)
    res = run_gate(t, foldin_numpy(t), CFG)
    assert res.failures == []
    assert res.metrics["explain_users"] == 40
    assert res.metrics["explain_mismatches"] == 0
    assert res.metrics["explain_max_abs_diff"] <= 1e-5


def test_wrong_explanations_fail_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    build = scorer_mod.build_scorer

    def squared_contributions(*args: Any, **kw: Any) -> onnx.ModelProto:
        model = build(*args, **kw)
        for node in model.graph.node:
            if list(node.output) == ["because_contrib"]:
                node.input[1] = "top_contrib"  # contribution * contribution: scores unchanged
        return model

    monkeypatch.setattr(scorer_mod, "build_scorer", squared_contributions)
    t = synthetic_tables(n_users=60, n_items=50, edges_per_user=6, seed=7)
    res = run_gate(t, foldin_numpy(t), CFG)
    assert [f.split(":")[0] for f in res.failures] == ["explain"]
    assert res.metrics["explain_mismatches"] == 40
    assert res.metrics["parity_topk_mismatches"] == 0


def test_a_slot_that_does_not_carry_its_value_is_caught() -> None:
    from recsys.export.gate import explanation_diff

    t = synthetic_tables(n_users=5, n_items=20, seed=1)
    h_idx = np.array([3, 7, 11], np.int64)
    h_w = np.array([1.0, 0.5, 0.0], np.float32)  # the last slot is padding
    items = np.array([0, 1, 2], np.int64)
    coef = h_w / np.sqrt(h_w.sum()) * t.item_inv_sqrt_deg[h_idx]
    c = coef[:, None] * (t.item_S[h_idx] @ t.item_final[items].T) / (t.num_layers + 1)
    c[2] = -np.inf
    order = np.argsort(-c, axis=0)[:2]
    vals = np.take_along_axis(c, order, axis=0).astype(np.float32)
    pos = np.where(np.isfinite(c), np.maximum(c, 0), 0).sum(axis=0).astype(np.float32)
    scores = np.ones(3, np.float32)
    ok = explanation_diff(t, h_idx, h_w, items, scores, order, vals, pos, 1e-5)
    assert ok[1] == "" and ok[0] <= 1e-5
    swapped = order[::-1].copy()  # right values, wrong slots
    bad = explanation_diff(t, h_idx, h_w, items, scores, swapped, vals, pos, 1e-5)
    assert bad[1].startswith("max |onnx - numpy contribution|")
