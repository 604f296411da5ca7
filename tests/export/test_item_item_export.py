"""A model with an item-item term: artifact -> export gate -> bundle -> server and production
scorer, the term added exactly wherever the model scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_export import (  # tests/export is on sys.path (no __init__.py)
    _write_snapshot,
    make_model,
    make_snapshot,
)

from recsys.artifacts import verify_artifact
from recsys.bundle import WeightRules, read_bundle
from recsys.export.export import export_model
from recsys.export.gate import ExportConfig, run_gate
from recsys.export.tables import compute_tables
from recsys.graph.snapshot import GraphSnapshot
from recsys.item_item import ItemItemTerm, history_csr
from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.artifact import load_model, write_model_artifact
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.item_item import filter_operator, histories


def _term(snap: GraphSnapshot, model: FeatureLightGCN) -> ItemItemTerm:
    """The filter's operator at a weight that moves the ranking (its spread ~ the GNN's)."""
    term = filter_operator(histories(InteractionData.from_snapshot(snap)), keep=25)
    hist = history_csr(snap.train_user, snap.train_item, snap.train_weight, *_shape(snap))
    users, items = _embeddings(snap, model)
    ratio = float((users @ items.T).std()) / float(term.scores(hist).std())
    return term.scaled(ratio)


def _shape(snap: GraphSnapshot) -> tuple[int, int]:
    return int(snap.n_users), int(snap.n_items)


def _embeddings(snap: GraphSnapshot, model: FeatureLightGCN) -> tuple[np.ndarray, np.ndarray]:
    adj = normalized_adjacency(
        snap.train_user, snap.train_item, snap.train_weight, snap.n_users, snap.n_items
    )
    with torch.no_grad():
        users, items = model(adj)
    return users.numpy(), items.numpy()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GraphSnapshot, ItemItemTerm]:
    tmp = tmp_path_factory.mktemp("ii")
    snap = make_snapshot(500, 120, 4000, seed=4)
    graph = str(tmp / "graph")
    _write_snapshot(graph, snap)
    model = make_model(snap, dim=8, layers=2)
    term = _term(snap, model)
    model_uri = str(tmp / "model")
    write_model_artifact(
        model_uri, model, TrainConfig(), graph, [], {}, "<html></html>", item_item=term
    )
    loaded = load_model(model_uri)
    assert loaded.item_item is not None
    np.testing.assert_array_equal(loaded.item_item.index, term.index)
    np.testing.assert_array_equal(loaded.item_item.value, term.value)
    out = tmp / "bundle"
    res = export_model(model_uri, str(out), ExportConfig(k=30, latency_p99_ms=100))
    assert res.metrics["parity_topk_mismatches"] == 0 and res.metrics["item_item_width"] == 25
    return out, snap, term


def test_bundle_carries_the_term_and_the_gate_checked_it(
    bundle: tuple[Path, GraphSnapshot, ItemItemTerm],
) -> None:
    out, _, term = bundle
    manifest = verify_artifact(str(out))
    assert {"item_item_index.npy", "item_item_value.npy"} <= set(manifest.files)
    data = read_bundle(str(out))
    assert data.meta.item_item_width == 25 and data.item_item is not None
    np.testing.assert_array_equal(data.item_item.value, term.value)


def test_served_scores_are_the_embeddings_plus_the_term_and_move_with_a_live_event(
    bundle: tuple[Path, GraphSnapshot, ItemItemTerm],
) -> None:
    from recsys.serving.engine import load_engine
    from recsys.serving.live import LiveEvent
    from recsys.serving.query import Query

    out, _, term = bundle
    engine = load_engine(str(out))
    t = read_bundle(str(out))
    hist = t.histories
    rules = t.meta.weights

    def reference(u: int, extra: dict[int, float]) -> np.ndarray:
        rows = hist[hist["user_idx"] == u]
        w = dict(zip(rows["item_idx"].tolist(), rows["weight"].tolist(), strict=True))
        for j, add in extra.items():
            w[j] = add
        items = np.array(sorted(w))
        weights = np.array([w[j] for j in items])
        coef = weights / np.sqrt(weights.sum()) * t.item_inv_sqrt_deg[items]
        emb = (t.user_e0[u] + coef @ t.item_S[items]) / (t.meta.num_layers + 1)
        scores = t.item_final.astype(np.float64) @ emb
        scores += weights @ term.matrix[items].toarray()
        scores[items] = -np.inf
        return scores

    rule = WeightRules.model_validate(rules.model_dump())
    for u in (0, 11, 333):
        got = engine.recommend(f"user{u}", Query(k=10))
        want = reference(u, {})
        top = np.argsort(-want, kind="stable")[:10]
        assert [it["item_id"] for it in got["items"]] == [f"p{j}" for j in top]
        np.testing.assert_allclose([it["score"] for it in got["items"]], want[top], atol=1e-4)
        # a purchase now: the term of the new item moves the scores at once
        seen = set(hist.loc[hist["user_idx"] == u, "item_idx"].tolist())
        new = next(j for j in range(t.meta.num_items) if j not in seen)
        live = [LiveEvent(4_000_000_000_000_000, f"p{new}", "purchase", None)]
        got = engine.recommend(f"user{u}", Query(k=10), live)
        want = reference(u, {new: rule.add_event(0.0, "purchase", None)})
        top = np.argsort(-want, kind="stable")[:10]
        assert [it["item_id"] for it in got["items"]] == [f"p{j}" for j in top]


def test_production_scorer_adds_the_bundle_term(
    bundle: tuple[Path, GraphSnapshot, ItemItemTerm],
) -> None:
    from recsys.evaluation.production import production_scorer

    out, snap, term = bundle
    prod = production_scorer(
        str(out),
        snap.user_ids,
        snap.item_ids,
        snap.train_user,
        snap.train_item,
        snap.train_weight,
    )
    users = np.array([1, 2, 3, 200])
    t = read_bundle(str(out))
    emb = prod.user_embeddings(users)
    hist = history_csr(snap.train_user, snap.train_item, snap.train_weight, *_shape(snap))
    want = emb @ t.item_final.T + term.scores(hist[users])
    np.testing.assert_allclose(prod.score(users), want, atol=1e-5)


def test_the_gate_fails_a_scorer_that_drops_the_term(monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.scorer as scorer_mod

    snap = make_snapshot(200, 60, 1500, seed=5)
    model = make_model(snap, dim=8, layers=2)
    term = _term(snap, model)
    tables, ref = compute_tables(model, snap, item_item=term)
    assert not run_gate(tables, ref.users, ExportConfig(k=20, latency_p99_ms=100)).failures
    build = scorer_mod.build_scorer

    def without_term(*args, **kwargs):  # type: ignore[no-untyped-def]
        return build(*args[:4])

    monkeypatch.setattr(scorer_mod, "build_scorer", without_term)
    tables, ref = compute_tables(model, snap, item_item=term)
    res = run_gate(tables, ref.users, ExportConfig(k=20, latency_p99_ms=100))
    assert any(f.startswith("parity") for f in res.failures)


def test_what_the_history_adds_counts_the_term_and_the_gate_checks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """history_pos adds the term's positive value: a scorer that leaves it out keeps its top-K
    (parity passes) but fails the explanation check."""
    import recsys.scorer as scorer_mod

    snap = make_snapshot(200, 60, 1500, seed=6)
    model = make_model(snap, dim=8, layers=2)
    term = _term(snap, model)
    cfg = ExportConfig(k=20, latency_p99_ms=100)
    tables, ref = compute_tables(model, snap, item_item=term)
    res = run_gate(tables, ref.users, cfg)
    assert not res.failures and res.metrics["explain_users"] == 200
    without = scorer_mod._history_pos_nodes
    monkeypatch.setattr(scorer_mod, "_history_pos_nodes", lambda _, out: without(False, out))
    tables, ref = compute_tables(model, snap, item_item=term)
    res = run_gate(tables, ref.users, cfg)
    assert [f.split(":")[0] for f in res.failures] == ["explain"]
