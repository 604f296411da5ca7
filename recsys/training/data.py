"""What training consumes, whatever the source (a lake graph snapshot or a benchmark split)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from recsys.data.lightgcn import LightGCNSplit


@dataclass(frozen=True)
class InteractionData:
    """Training interactions of a bipartite graph.

    ``train_user`` / ``train_item`` int64 ``[E]``, ``train_weight`` float32 ``[E]``;
    optional node features ``user_features`` ``[U, Fu]`` / ``item_features`` ``[I, Fi]``.
    """

    n_users: int
    n_items: int
    train_user: np.ndarray
    train_item: np.ndarray
    train_weight: np.ndarray
    user_features: np.ndarray | None = None
    item_features: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.train_user)
        if len(self.train_item) != n or len(self.train_weight) != n:
            raise ValueError("train_user, train_item and train_weight must have the same length")
        if self.user_features is not None and self.user_features.shape[0] != self.n_users:
            raise ValueError("user_features must have n_users rows")
        if self.item_features is not None and self.item_features.shape[0] != self.n_items:
            raise ValueError("item_features must have n_items rows")

    @property
    def n_interactions(self) -> int:
        return len(self.train_user)

    @classmethod
    def from_lightgcn(cls, split: LightGCNSplit) -> InteractionData:
        """Unit-weight, featureless interactions of a LightGCN-format split's train part."""
        return cls(
            n_users=int(split.n_users),
            n_items=int(split.n_items),
            train_user=np.asarray(split.train_user, dtype=np.int64),
            train_item=np.asarray(split.train_item, dtype=np.int64),
            train_weight=np.ones(len(split.train_user), dtype=np.float32),
        )

    @classmethod
    def from_snapshot(cls, snapshot: Any) -> InteractionData:
        """Weighted interactions and node features of a graph snapshot (``GraphSnapshot``)."""

        def feats(x: Any) -> np.ndarray | None:
            if x is None:
                return None
            arr = np.asarray(x, dtype=np.float32)
            return arr if arr.ndim == 2 and arr.shape[1] > 0 else None

        return cls(
            n_users=int(snapshot.n_users),
            n_items=int(snapshot.n_items),
            train_user=np.asarray(snapshot.train_user, dtype=np.int64),
            train_item=np.asarray(snapshot.train_item, dtype=np.int64),
            train_weight=np.asarray(snapshot.train_weight, dtype=np.float32),
            user_features=feats(snapshot.user_features),
            item_features=feats(snapshot.item_features),
        )

    def subset(self, mask: np.ndarray) -> InteractionData:
        """The same graph restricted to the interactions where ``mask`` is true."""
        return InteractionData(
            n_users=self.n_users,
            n_items=self.n_items,
            train_user=self.train_user[mask],
            train_item=self.train_item[mask],
            train_weight=self.train_weight[mask],
            user_features=self.user_features,
            item_features=self.item_features,
        )


@dataclass(frozen=True)
class ValidationSplit:
    """Training interactions without the validation ones, and the held-out pairs."""

    train: InteractionData
    val_user: np.ndarray
    val_item: np.ndarray


def split_validation(data: InteractionData, fraction: float, seed: int) -> ValidationSplit:
    """Carve about ``fraction * n_u`` random distinct items of each user ``u`` out of training.

    The count is ``fraction * n_u`` rounded up or down at random (so small
    users are validated too, in expectation), and at most ``n_u - 1``: every
    user keeps at least one training item. A (user, item) pair seen several
    times goes wholly to one side, so the validation never asks for an item the
    model trained on for that user.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError("fraction must be in [0, 1)")
    rng = np.random.default_rng(seed)
    key = data.train_user * np.int64(data.n_items) + data.train_item
    uniq, inverse = np.unique(key, return_inverse=True)
    pair_user = uniq // data.n_items
    # random rank of each distinct pair within its user: sort by (user, random)
    order = np.lexsort((rng.random(len(uniq)), pair_user))
    counts = np.bincount(pair_user, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq)) - starts[pair_user[order]]
    n_val = np.floor(fraction * counts + rng.random(data.n_users)).astype(np.int64)
    n_val = np.minimum(n_val, np.maximum(counts - 1, 0))
    pair_is_val = rank < n_val[pair_user]
    is_val = pair_is_val[inverse]
    val_pairs = uniq[pair_is_val]
    return ValidationSplit(
        train=data.subset(~is_val),
        val_user=(val_pairs // data.n_items).astype(np.int64),
        val_item=(val_pairs % data.n_items).astype(np.int64),
    )
