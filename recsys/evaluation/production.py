"""The production bundle as a scorer of today's holdout (onnxruntime, no torch).

The champion / challenger comparison scores the model in production on the very users,
histories and catalogue the candidate is scored on. A bundle can score a user from any
history (the exact fold-in of DESIGN.md), so for each holdout user its ONNX scorer is fed
that user's layer-0 embedding from the bundle and the user's **train** edges of today's
snapshot (the history the candidate saw; the holdout days stay hidden from both), and its
``user_emb`` output, dotted with the bundle's item table, scores the whole catalogue.
Scores are laid out in today's item index (items are matched by id); products the bundle
does not know score ``-inf`` (it could not recommend them), and history edges naming them
are left out of its fold-in, as serving would. The ranking, the masking of train items and
the metrics are then those of every other model (:meth:`~recsys.evaluation.holdout.Holdout.score`).

Users the bundle does not know (not in its ``users.parquet``: new since its snapshot) are
the ones production cannot score; :func:`production_scorer` returns the mask of those it
can, and the gate compares candidate and production on that subset, saying how many were
left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.bundle import read_bundle
from recsys.errors import InputError
from recsys.graph.idmap import index_of
from recsys.item_item import ItemItemTerm
from recsys.sessions import scorer_session

__all__ = ["ProductionScorer", "production_scorer"]


@dataclass
class ProductionScorer:
    """``score(users)`` (snapshot user indices) -> float32 ``[len(users), n_items]`` in the
    snapshot's item index, from a serving bundle; see the module docstring."""

    uri: str
    version: str
    user_pos: np.ndarray
    """Bundle row of each snapshot user (-1: unknown to the bundle)."""
    item_to_bundle: np.ndarray
    """Bundle item index of each snapshot item (-1: unknown to the bundle)."""
    history: sp.csr_matrix
    """Snapshot users x bundle items: the users' train edge weights, in the bundle's index."""
    user_e0: np.ndarray
    item_final: np.ndarray
    session: Any
    n_items: int
    item_item: ItemItemTerm | None = None
    """The bundle's item-item term (its scorer adds it to the embedding scores)."""

    def known(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_pos[np.asarray(users, dtype=np.int64)] >= 0)

    def user_embeddings(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        pos = self.user_pos[users]
        if (pos < 0).any():
            raise InputError(f"{self.uri}: user index {int(users[pos < 0][0])} unknown to it")
        rows = self.history[users]
        lens = np.diff(rows.indptr)
        width = max(int(lens.max()) if lens.size else 0, 1)
        h_idx = np.zeros((users.size, width), dtype=np.int64)
        h_w = np.zeros((users.size, width), dtype=np.float32)
        slot = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], lens)
        row = np.repeat(np.arange(users.size), lens)
        h_idx[row, slot] = rows.indices
        h_w[row, slot] = rows.data
        excl = np.full((users.size, 1), self.item_final.shape[0], dtype=np.int64)
        (emb,) = self.session.run(
            ["user_emb"],
            {
                "e0": self.user_e0[pos].astype(np.float32),
                "hist_idx": h_idx,
                "hist_w": h_w,
                "excl_idx": excl,
                "k": np.array([1], dtype=np.int64),
            },
        )
        out: np.ndarray = np.asarray(emb, dtype=np.float32)
        return out

    def score(self, users: np.ndarray) -> np.ndarray:
        emb = self.user_embeddings(users)
        out = np.full((emb.shape[0], self.n_items), -np.inf, dtype=np.float32)
        known = self.item_to_bundle >= 0
        bundle_scores = emb @ self.item_final.T
        if self.item_item is not None:
            bundle_scores += self.item_item.scores(self.history[np.asarray(users, np.int64)])
        out[:, known] = bundle_scores[:, self.item_to_bundle[known]]
        return out


def production_scorer(
    bundle_uri: str,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    train_user: np.ndarray,
    train_item: np.ndarray,
    train_weight: np.ndarray,
) -> ProductionScorer:
    """A scorer of the snapshot whose ids and train edges are given, from the bundle at
    ``bundle_uri`` (read and checksum-verified)."""
    data = read_bundle(bundle_uri, verify=True)
    b_users = data.users.sort_values("user_idx")["user_id"].to_numpy(dtype=object).astype(str)
    b_items = data.items.sort_values("item_idx")["item_id"].to_numpy(dtype=object).astype(str)
    user_pos = index_of(b_users, np.asarray(user_ids, dtype=object).astype(str))
    item_to_bundle = index_of(b_items, np.asarray(item_ids, dtype=object).astype(str))
    tu = np.asarray(train_user, dtype=np.int64)
    bi = item_to_bundle[np.asarray(train_item, dtype=np.int64)]
    keep = bi >= 0  # an item the bundle does not know has no row in its tables
    history = sp.csr_matrix(
        (np.asarray(train_weight, dtype=np.float32)[keep], (tu[keep], bi[keep])),
        shape=(len(user_ids), len(b_items)),
        dtype=np.float32,
    )
    history.sum_duplicates()
    return ProductionScorer(
        uri=bundle_uri,
        version=data.meta.version,
        user_pos=user_pos,
        item_to_bundle=item_to_bundle,
        history=history,
        user_e0=np.asarray(data.user_e0, dtype=np.float32),
        item_final=np.asarray(data.item_final, dtype=np.float32),
        session=scorer_session(data.scorer_onnx),
        n_items=len(item_ids),
        item_item=data.item_item,
    )
