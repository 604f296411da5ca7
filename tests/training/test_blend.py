"""The GNN + graph-filter blend: chosen on validation, exact as a plain FeatureLightGCN."""

from __future__ import annotations

import numpy as np
import torch

from recsys.training.blend import spectral_columns
from recsys.training.init import normalized_svd
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

from .planted import planted
from .test_loop import cfg, test_recall


def test_spectral_columns_are_the_top_right_singular_vectors_scaled() -> None:
    p = planted(n_users=300, n_items=150, seed=2)
    d = p.data
    cols = spectral_columns(d, 12, 0.5, 0).numpy()
    r = np.zeros((d.n_users, d.n_items))
    np.add.at(r, (d.train_user, d.train_item), d.train_weight)
    du, di = r.sum(1), r.sum(0)
    rn = r / np.sqrt(np.outer(np.where(du > 0, du, 1), np.where(di > 0, di, 1)))
    _, s, vt = np.linalg.svd(rn)
    np.testing.assert_allclose(np.abs(cols), np.abs(vt[:12].T * np.sqrt(s[:12])), atol=1e-5)
    _, s2, _ = normalized_svd(d.train_user, d.train_item, d.train_weight, d.n_users, d.n_items, 12)
    np.testing.assert_allclose(s2, s[:12], rtol=1e-6)


def test_an_undertrained_gnn_gets_the_filter_and_ranks_better() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    # one epoch at a tiny learning rate: little more than noise, so the filter must win
    c = cfg(epochs=1, lr=1e-4, eval_every=1, blend_rank=16, blend_weights=[1.0, 4.0, 16.0])
    result = train(p.data, c)
    plain = train(p.data, cfg(epochs=1, lr=1e-4, eval_every=1))
    assert result.extra["blend_weight"] > 0
    scores = result.extra["blend_validation"]
    assert scores[str(result.extra["blend_weight"])] == max(scores.values()) > scores["0.0"]
    assert result.model.embedding_dim == 32 + 16
    adj = adjacency_for(p.data, c)
    with torch.no_grad():
        blended = test_recall(p, *result.model(adj))
        alone = test_recall(p, *plain.model(adj))
    assert blended > alone + 0.05, (blended, alone)


def test_a_good_gnn_keeps_its_own_scores_when_the_filter_does_not_help() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    result = train(p.data, cfg(blend_rank=16))
    scores = result.extra["blend_validation"]
    assert result.extra["blend_weight"] == 0.0 and scores["0.0"] == max(scores.values())
    assert result.model.embedding_dim == 32
