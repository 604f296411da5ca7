"""The item-item term: the filter's operator, its weight on validation, its learning gain."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from pydantic import ValidationError

from recsys.errors import InputError
from recsys.evaluation.baselines import PolyFilter
from recsys.item_item import ItemItemTerm, top_entries
from recsys.training.config import TrainConfig
from recsys.training.item_item import filter_operator, histories
from recsys.training.loop import train
from recsys.training.training_graph import adjacency_for

from .planted import Planted, planted
from .test_loop import cfg, test_recall


def recall_with_term(
    p: Planted, ue: torch.Tensor, ie: torch.Tensor, term: ItemItemTerm | None
) -> float:
    return test_recall(p, ue, ie, term.scorer(histories(p.data)) if term is not None else None)


def test_full_operator_scores_every_history_like_the_filter() -> None:
    """Kept whole (every entry but the diagonal), the term is PolyFilter's score of any weighted
    history, on every item the history does not hold."""
    p = planted(n_users=200, n_items=60, seed=3)
    term = filter_operator(histories(p.data), keep=p.data.n_items - 1)
    assert term.width == 59 and (term.index != np.arange(60)[:, None]).all()
    filt = PolyFilter()
    filt.fit(histories(p.data))
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((5, 60)) < 0.1, rng.uniform(0.5, 3.0, (5, 60)), 0.0)
    hist = sp.csr_matrix(dense.astype(np.float32))
    want = filt.score_history(hist)
    got = term.scores(hist)
    unseen = dense == 0
    np.testing.assert_allclose(got[unseen], want[unseen], rtol=1e-4, atol=1e-5)


def test_top_entries_keeps_the_largest_off_diagonal_entries() -> None:
    rows = np.array([[9.0, 1.0, 5.0, 3.0], [2.0, 9.0, -1.0, 4.0]], np.float32)
    idx, val = top_entries(rows, first_row=0, keep=2)
    assert idx.tolist() == [[2, 3], [3, 0]] and val.tolist() == [[5.0, 3.0], [4.0, 2.0]]
    idx, _ = top_entries(rows, first_row=2, keep=3)  # rows are items 2 and 3
    assert 2 not in idx[0] and 3 not in idx[1]
    with pytest.raises(InputError, match="at least 2 items"):
        top_entries(np.zeros((1, 1), np.float32), 0, 5)


def test_a_term_with_a_wrong_shape_or_index_is_refused() -> None:
    with pytest.raises(InputError, match=r"one \[items, width\] shape"):
        ItemItemTerm(np.zeros((3, 2), np.int32), np.zeros((3, 1), np.float32))
    with pytest.raises(InputError, match=r"outside 0\.\.2"):
        ItemItemTerm(np.full((3, 1), 3, np.int32), np.zeros((3, 1), np.float32))
    with pytest.raises(ValidationError, match="set one"):
        TrainConfig(blend_rank=8, item_item_keep=10)


def test_an_undertrained_gnn_gets_the_term_and_ranks_better() -> None:
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    # one epoch at a tiny learning rate: little more than noise, so the filter must carry it
    c = cfg(epochs=1, lr=1e-4, eval_every=1, item_item_keep=30)
    result = train(p.data, c)
    weight = result.extra["item_item_weight"]
    scores = result.extra["item_item_validation"]
    assert weight > 0 and scores[str(weight)] == max(scores.values()) > scores["0.0"]
    assert result.item_item is not None and result.item_item.width == 30
    adj = adjacency_for(p.data, c)
    with torch.no_grad():
        ue, ie = result.model(adj)
    with_term = recall_with_term(p, ue, ie, result.item_item)
    alone = recall_with_term(p, ue, ie, None)
    assert with_term > alone + 0.05, (with_term, alone)


def test_a_good_gnn_keeps_its_own_scores_when_the_term_does_not_help() -> None:
    """On a planted signal the GNN learns well, a heavy filter does not beat it on validation;
    whatever the choice, it is the best validation score among the candidates."""
    p = planted(n_users=500, n_items=300, per_user=8, seed=1)
    result = train(p.data, cfg(item_item_keep=30, item_item_weights=[50.0]))
    scores = result.extra["item_item_validation"]
    assert result.extra["item_item_weight"] == 0.0 and scores["0.0"] == max(scores.values())
    assert result.item_item is None


def test_a_catalogue_above_the_cap_gets_no_term_and_says_why() -> None:
    p = planted(n_users=200, n_items=120, per_user=8, seed=2)
    result = train(p.data, cfg(epochs=1, eval_every=1, item_item_keep=30, item_item_max_work=1e4))
    assert result.item_item is None and result.extra["item_item_weight"] == 0.0
    assert "x 120 items" in result.extra["item_item_skipped"]
