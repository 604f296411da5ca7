from __future__ import annotations

import numpy as np
import torch

from recsys.evaluation.baselines import PolyFilter
from recsys.item_item import history_csr
from recsys.training.data import InteractionData
from recsys.training.distill import Teacher, teacher_top
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

from .planted import planted
from .test_loop import cfg, final, popularity_recall, test_recall


def test_teacher_top_is_the_filters_ranking_of_unseen_items() -> None:
    p = planted(n_users=120, n_items=60, per_user=6, seed=3)
    d = p.data
    # one user without any history: the filter scores nothing for them
    keep = d.train_user != 0
    data = InteractionData(
        d.n_users, d.n_items, d.train_user[keep], d.train_item[keep], d.train_weight[keep]
    )
    top, valid = teacher_top(data, 7, low_pass=0.1)
    assert top.shape == valid.shape == (d.n_users, 7)
    assert not valid[0].any() and valid[1:].all()
    history = history_csr(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items
    )
    filt = PolyFilter(alpha=0.1)
    filt.fit(history)
    scores = filt.score_history(history)
    for u in range(1, d.n_users):
        seen = set(history[u].indices.tolist())
        items = top[u].tolist()
        assert not seen & set(items), u
        s = scores[u].copy()
        s[list(seen)] = -np.inf
        assert np.all(np.diff(s[items]) <= 0), u  # best first
        assert s[items[-1]] >= np.sort(s)[-7], u  # nothing unseen scores above the last kept


def test_soft_positives_are_drawn_from_each_users_own_list() -> None:
    top = torch.tensor([[5, 6, 7], [1, 2, 3]])
    valid = torch.tensor([[True, True, True], [False, False, False]])
    u = torch.tensor([0, 1, 0, 1] * 50)
    t, ok = Teacher(top, valid).draw(u, torch.Generator().manual_seed(0))
    assert set(t[u == 0].tolist()) == {5, 6, 7} and set(t[u == 1].tolist()) <= {1, 2, 3}
    assert ok[u == 0].all() and not ok[u == 1].any()


def test_rank_decay_favours_the_teachers_best_items() -> None:
    top = torch.tensor([[5, 6, 7]])
    u = torch.zeros(30_000, dtype=torch.long)
    teacher = Teacher(top, torch.ones_like(top, dtype=torch.bool), rank_decay=0.5)
    t, ok = teacher.draw(u, torch.Generator().manual_seed(0))
    share = torch.bincount(t, minlength=8)[5:].double() / u.numel()
    # weights 1, 0.5, 0.25 over their sum 1.75
    expected = torch.tensor([4 / 7, 2 / 7, 1 / 7], dtype=torch.float64)
    assert torch.allclose(share, expected, atol=0.01)
    assert ok.all()


def test_distillation_trains_and_still_learns_the_clusters() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    c = cfg(distill_weight=0.3, distill_top=5, epochs=20)
    result = train(p.data, c)
    assert all(row["distill"] > 0 for row in result.history)
    assert result.history[-1]["distill"] < result.history[0]["distill"]
    with torch.no_grad():
        ue, ie = result.model(adjacency_for(p.data, c))
    gnn = test_recall(p, ue, ie)
    pop = popularity_recall(p)
    mf = final(p, cfg(num_layers=0))
    print(f"distill: gnn={gnn:.3f} mf-bpr={mf:.3f} pop={pop:.3f}")
    assert gnn > 1.5 * pop and gnn > mf + 0.03, (gnn, mf, pop)
