"""Distillation from a graph filter: its top unseen items per user as extra BPR positives.

A linear graph filter (:class:`recsys.evaluation.baselines.PolyFilter`) ranks a user's
unseen items better than the GNN alone does (Gowalla validation Recall@20 0.2239 vs 0.2155,
benchmarks/RESULTS.md). Its
``T`` best unseen items per user, ``top[u]`` (``[U, T]``), become soft positives: each
step pairs every positive row ``(u, p)`` with one ``t`` drawn uniformly from ``top[u]`` and
adds, against the row's own negatives ``n_j``::

    L_distill = weight * mean_{b, j} softplus(s_bj - s_bt)

The teacher is fitted on the graph the phase trains on (validation pairs held out while
validation still chooses), so it never sees a validation or holdout pair. Scores stay the
GNN's dot products: nothing of the teacher is served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from recsys.evaluation.baselines import PolyFilter
from recsys.item_item import history_csr
from recsys.logs import get_logger
from recsys.training.data import InteractionData

log = get_logger(__name__)

BLOCK_CELLS = 1 << 26
"""Cells of one block of dense user scores (256 MiB of float32)."""


def teacher_top(
    data: InteractionData, top: int, low_pass: float, progress: bool = False
) -> tuple[Tensor, Tensor]:
    """The filter's ``top`` best items per user among those the user has no training pair
    with: ``(items int64 [U, T], valid bool [U, T])``, best first; ``valid`` is False where a
    user has fewer than ``T`` unseen items (or no history: the filter scores nothing)."""
    history = history_csr(
        data.train_user, data.train_item, data.train_weight, data.n_users, data.n_items
    )
    n_users, n_items = history.shape
    t = max(1, min(top, n_items - 1))
    filt = PolyFilter(alpha=low_pass)
    filt.fit(history)
    block = max(64, BLOCK_CELLS // max(n_items, 1))
    items = np.zeros((n_users, t), dtype=np.int64)
    valid = np.zeros((n_users, t), dtype=bool)
    for start in tqdm(range(0, n_users, block), desc="teacher", unit="block", disable=not progress):
        stop = min(start + block, n_users)
        rows = history[start:stop]
        scores = filt.score_history(rows)
        seen = rows.nonzero()
        scores[seen] = -np.inf
        idx = np.argpartition(-scores, t - 1, axis=1)[:, :t]
        val = np.take_along_axis(scores, idx, axis=1)
        order = np.argsort(-val, axis=1, kind="stable")
        items[start:stop] = np.take_along_axis(idx, order, axis=1)
        ok = np.isfinite(np.take_along_axis(val, order, axis=1))
        ok &= (np.asarray(rows.getnnz(axis=1)) > 0)[:, None]
        valid[start:stop] = ok
    log.info(
        "teacher: top %d unseen items of %d users (%d with a history)",
        t,
        n_users,
        int(valid[:, 0].sum()),
    )
    return torch.from_numpy(items), torch.from_numpy(valid)


@dataclass
class Teacher:
    """A teacher's lists and how a soft positive is drawn from them.

    ``items`` / ``valid`` ``[U, T]`` as :func:`teacher_top` returns them; slot ``r`` (0 =
    the teacher's best) is drawn with probability ``rank_decay**r / sum_s rank_decay**s``
    (1: uniform over the ``T`` slots)."""

    items: Tensor
    valid: Tensor
    rank_decay: float = 1.0

    def to(self, device: torch.device | str) -> Teacher:
        return Teacher(self.items.to(device), self.valid.to(device), self.rank_decay)

    def draw(self, u: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One teacher item per row user ``u`` ``[B]``: ``(items [B], valid [B])``."""
        t = self.items.shape[1]
        if self.rank_decay == 1.0:
            slot = torch.randint(t, u.shape, generator=gen, device=u.device)
        else:
            p = self.rank_decay ** torch.arange(t, dtype=torch.float64, device=u.device)
            slot = torch.multinomial(p, u.numel(), replacement=True, generator=gen)
        return self.items[u, slot], self.valid[u, slot]
