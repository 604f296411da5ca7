"""Validation during training through the product's evaluator (full ranking, train masked)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from recsys.errors import InputError
from recsys.evaluation.ranking import (
    ScoreBatch,
    evaluate_topk,
    interactions_csr,
    topk_full_ranking,
)
from recsys.training.data import ValidationSplit


class RankingEvaluator:
    """Recall/NDCG@K of embeddings on held-out pairs, ranking every item.

    ``known_*`` are the interactions to mask (the ones the model trained on);
    ``max_users`` evaluates a fixed random subset of the users with held-out
    items, which keeps frequent validation cheap on large graphs.
    """

    def __init__(
        self,
        known_user: np.ndarray,
        known_item: np.ndarray,
        heldout_user: np.ndarray,
        heldout_item: np.ndarray,
        n_users: int,
        n_items: int,
        ks: tuple[int, ...] = (20,),
        max_users: int | None = None,
        seed: int = 0,
        batch_size: int = 2048,
    ) -> None:
        self.train_csr = interactions_csr(known_user, known_item, n_users, n_items)
        self.test_csr = interactions_csr(heldout_user, heldout_item, n_users, n_items)
        users = np.flatnonzero(np.diff(self.test_csr.indptr) > 0)
        if max_users is not None and users.size > max_users:
            rng = np.random.default_rng(seed)
            users = np.sort(rng.choice(users, size=max_users, replace=False))
        self.users = users
        self.ks = ks
        self.n_items = n_items
        self.batch_size = batch_size

    @classmethod
    def of_validation(
        cls,
        split: ValidationSplit,
        ks: tuple[int, ...] = (20,),
        max_users: int | None = None,
        seed: int = 0,
    ) -> RankingEvaluator:
        """The carve's held-out pairs, masking what the model trained on (``split.train``)."""
        t = split.train
        return cls(
            t.train_user,
            t.train_item,
            split.val_user,
            split.val_item,
            t.n_users,
            t.n_items,
            ks=ks,
            max_users=max_users,
            seed=seed,
        )

    @property
    def empty(self) -> bool:
        return self.users.size == 0

    @torch.no_grad()
    def evaluate(
        self, user_emb: Tensor, item_emb: Tensor, extra: ScoreBatch | None = None
    ) -> dict[str, float]:
        """Metrics keyed like ``recall@20``, ``ndcg@20`` (see :func:`evaluate_topk`) of the dot
        products, plus ``extra(users)`` (an item-item term) when given."""
        if self.empty:
            return {}
        k = max(self.ks)
        if extra is None and user_emb.device.type != "cpu":
            topk = topk_on_device(
                user_emb, item_emb, self.users, self.train_csr, k, self.batch_size
            )
            return evaluate_topk(topk, self.users, self.test_csr, self.ks, n_items=self.n_items)
        item_t = item_emb.T.contiguous()

        def score(users: np.ndarray) -> np.ndarray:
            idx = torch.from_numpy(users).to(user_emb.device)
            out: np.ndarray = (user_emb[idx] @ item_t).float().cpu().numpy()
            if extra is not None:
                out += extra(users)
            return out

        topk = topk_full_ranking(score, self.users, self.train_csr, k, self.batch_size)
        return evaluate_topk(topk, self.users, self.test_csr, self.ks, n_items=self.n_items)


@torch.no_grad()
def topk_on_device(
    user_emb: Tensor,
    item_emb: Tensor,
    users: np.ndarray,
    train_csr: sp.csr_matrix,
    k: int,
    batch_size: int = 2048,
) -> np.ndarray:
    """:func:`topk_full_ranking` of the dot products, computed where the embeddings are.

    On a GPU the ``[B, I]`` score blocks then never cross to the host: the train items are
    masked and the top ``k`` selected on the device, and only ``[B, k]`` ids come back
    (int64 ``[len(users), k]``, best first, ``-1`` where fewer than ``k`` items are
    unmasked). Exact ties may be ordered differently from the CPU path (float scores
    rarely tie).
    """
    dev = user_emb.device
    n_items = item_emb.shape[0]
    kk = min(k, n_items)
    item_t = item_emb.T.float().contiguous()
    out = np.full((users.size, k), -1, dtype=np.int64)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = user_emb[torch.from_numpy(batch).to(dev)].float() @ item_t
        sub = train_csr[batch]
        if torch.isnan(scores).any():
            raise InputError("the embeddings give NaN scores")
        rows = torch.from_numpy(np.repeat(np.arange(batch.size), np.diff(sub.indptr))).to(dev)
        cols = torch.from_numpy(sub.indices.astype(np.int64)).to(dev)
        scores[rows, cols] = -torch.inf
        val, idx = torch.topk(scores, kk, dim=1)
        idx[val == -torch.inf] = -1
        out[start : start + batch.size, :kk] = idx.cpu().numpy()
    return out
