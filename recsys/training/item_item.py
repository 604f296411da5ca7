"""The item-item term of a trained model: a graph filter's operator, cut and weighted.

The GNN's scores and a linear graph filter's (:class:`recsys.evaluation.baselines.PolyFilter`)
rank differently enough that their sum ranks better than either (benchmarks/RESULTS.md). The
filter is linear in a user's history, so its item-item operator ``F`` (row ``i``: the filter's
scores of a history holding item ``i`` alone) scores any history, a live one included; kept to
its ``keep`` largest entries per item it is the sparse term of :mod:`recsys.item_item`, which
the ONNX scorer adds exactly. A model then scores::

    s_uj = <e_u, e_j> + weight * ratio * sum_i w_ui F_M[i, j]

``ratio`` makes the term's score spread equal to the GNN's (both measured on a fixed sample of
users), so ``weight`` reads as "the filter's spread as a multiple of the GNN's"; it is chosen
on validation among ``item_item_weights`` and 0 (no term), never on the holdout. As with the
spectral blend (:mod:`recsys.training.blend`), the weight is chosen on the graph that held the
validation pairs out, and the served term is the filter of the graph the model serves (every
training pair) at that weight.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from recsys.evaluation.baselines import PolyFilter
from recsys.item_item import ItemItemTerm, history_csr, top_entries
from recsys.logs import get_logger
from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.blend import BlendChoice, best_weight, scale_sample, score_spread
from recsys.training.config import TrainConfig
from recsys.training.data import InteractionData
from recsys.training.evaluator import RankingEvaluator

log = get_logger(__name__)

BLOCK_ITEMS = 1024
"""Operator rows computed per block at most (dense ``[block, I]`` and ``[U, block]`` buffers)."""
BLOCK_CELLS = 1 << 26
"""Cells of the larger of those buffers (256 MiB of float32): large graphs take fewer rows."""


def histories(data: InteractionData) -> sp.csr_matrix:
    """Users x items, edge weights summed: what the fold-in and the term read per user."""
    return history_csr(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items
    )


def filter_operator(
    history: sp.csr_matrix, keep: int, low_pass: float = 0.1, progress: bool = False
) -> ItemItemTerm:
    """PolyFilter (its defaults, ``low_pass`` its ideal low-pass weight ``alpha``) fitted on
    ``history`` (users x items, :func:`histories`), its operator cut to ``keep`` entries per
    item (the diagonal left out), unweighted."""
    n_users, n = history.shape
    block = max(16, min(BLOCK_ITEMS, BLOCK_CELLS // max(n_users, n, 1)))
    filt = PolyFilter(alpha=low_pass)
    filt.fit(history)
    index, value = [], []
    for start in tqdm(range(0, n, block), desc="item-item", unit="block", disable=not progress):
        rows = np.arange(start, min(start + block, n))
        unit = sp.csr_matrix(
            (np.ones(rows.size, np.float32), (np.arange(rows.size), rows)), shape=(rows.size, n)
        )
        idx, val = top_entries(filt.score_history(unit), start, keep)
        index.append(idx)
        value.append(val)
    return ItemItemTerm(np.concatenate(index), np.concatenate(value))


def _spread_ratio(
    ue: torch.Tensor, ie: torch.Tensor, term: ItemItemTerm, history: sp.csr_matrix, seed: int
) -> float:
    """std of the GNN's scores / std of the term's, over a fixed sample of users."""
    sample = scale_sample(ue.shape[0], seed)
    gnn = score_spread(ue, ie, sample)
    filt = float(term.scores(history[sample.numpy()]).std())
    return gnn / max(filt, 1e-30)


def _embeddings(model: FeatureLightGCN, adj: NormalizedAdjacency) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        ue, ie = model(adj)
    return ue, ie


def choose_item_item(
    model: FeatureLightGCN,
    train_data: InteractionData,
    adj: NormalizedAdjacency,
    evaluator: RankingEvaluator,
    cfg: TrainConfig,
) -> BlendChoice:
    """The term's weight with the best validation ``cfg.select_metric`` (0 among the candidates).

    ``train_data`` / ``adj``: the graph the model trained on (validation pairs held out). A
    graph above ``cfg.item_item_max_work`` (edges x items; or under 2 items) gets weight 0 and
    the reason.
    """
    n = train_data.n_items
    work = float(train_data.n_interactions) * n
    if n < 2 or work > cfg.item_item_max_work:
        reason = (
            f"{train_data.n_interactions} edges x {n} items = {work:.3g}, above "
            f"item_item_max_work={cfg.item_item_max_work:.3g}"
            if n >= 2
            else f"{n} item(s): no item-item pairs"
        )
        log.warning("no item-item term: %s", reason)
        return BlendChoice(0.0, {}, reason)
    history = histories(train_data)
    term = filter_operator(history, cfg.item_item_keep, cfg.item_item_low_pass, cfg.progress)
    ue, ie = _embeddings(model, adj)
    ratio = _spread_ratio(ue, ie, term, history, cfg.seed)

    def metrics(w: float) -> dict[str, float]:
        return evaluator.evaluate(ue, ie, term.scaled(w * ratio).scorer(history) if w else None)

    what = f"item-item ({term.width} entries per item)"
    return best_weight(cfg.item_item_weights, metrics, cfg.select_metric, what)


def item_item_term(
    model: FeatureLightGCN,
    data: InteractionData,
    adj: NormalizedAdjacency,
    cfg: TrainConfig,
    weight: float,
) -> ItemItemTerm:
    """The served term: the filter of ``data`` (the served graph, adjacency ``adj``) at
    ``weight``, its spread measured against ``model``'s on that graph."""
    history = histories(data)
    term = filter_operator(history, cfg.item_item_keep, cfg.item_item_low_pass, cfg.progress)
    ue, ie = _embeddings(model, adj)
    return term.scaled(weight * _spread_ratio(ue, ie, term, history, cfg.seed))
