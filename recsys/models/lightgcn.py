"""Feature-aware LightGCN.

Notation: ``U`` users, ``I`` items, ``N = U + I`` nodes (users first),
``d`` the embedding size, ``K`` the number of propagation layers, ``Â`` the
normalised adjacency ``[N, N]`` (:mod:`recsys.models.adjacency`).

Layer 0 (``[N, d]``)::

    e0_u = E_user[u] + W_u x_u + b_u        x_u: user features [Fu] (if any)
    e0_i = E_item[i] + W_i x_i + b_i        x_i: item features [Fi] (if any)

so a user or product unseen in training still gets ``W x + b`` from its
features alone. Propagation and readout::

    e^(k+1) = Â e^(k)                       k = 0..K-1, each [N, d]
    e       = (e^(0) + ... + e^(K)) / (K+1)
    score(u, i) = <e_u, e_i>

``K = 0`` is matrix factorisation. With the symmetric normalisation the final
user embedding factors exactly (the serving fold-in)::

    e_u = ( e0_u + sum_{i in N(u)} w_ui / sqrt(d_u d_i) * S_i ) / (K+1)
    S_i = sum_{k=0}^{K-1} e_i^(k)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from recsys.models.adjacency import NormalizedAdjacency
from recsys.models.propagation import mean_of_powers, spmm


class FeatureLightGCN(nn.Module):
    """LightGCN whose layer-0 embedding adds a linear projection of node features.

    Parameters: ``user_embedding.weight`` ``[U, d]``, ``item_embedding.weight``
    ``[I, d]``, and when features are given ``user_proj`` (``Fu -> d``) and
    ``item_proj`` (``Fi -> d``). Features are persistent buffers
    (``user_features`` ``[U, Fu]``, ``item_features`` ``[I, Fi]``) so a saved
    ``state_dict`` is the whole model.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 3,
        user_features: Tensor | None = None,
        item_features: Tensor | None = None,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError("num_layers must be >= 0")
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.item_embedding.weight, std=init_std)
        self.user_features: Tensor | None
        self.item_features: Tensor | None
        self.user_proj: nn.Linear | None = self._attach_features("user", user_features, num_users)
        self.item_proj: nn.Linear | None = self._attach_features("item", item_features, num_items)

    def _attach_features(self, kind: str, features: Tensor | None, rows: int) -> nn.Linear | None:
        """Register ``{kind}_features`` (``None`` without features); return its projection."""
        if features is None or features.shape[1] == 0:
            self.register_buffer(f"{kind}_features", None)
            return None
        if features.shape[0] != rows:
            raise ValueError(f"{kind}_features must have one row per {kind}")
        self.register_buffer(f"{kind}_features", features.float().clone())
        proj = nn.Linear(features.shape[1], self.embedding_dim)
        # small init: the id embeddings dominate at first, features are learned in
        nn.init.xavier_uniform_(proj.weight, gain=0.1)
        nn.init.zeros_(proj.bias)
        return proj

    @property
    def user_feature_dim(self) -> int:
        return 0 if self.user_features is None else int(self.user_features.shape[1])

    @property
    def item_feature_dim(self) -> int:
        return 0 if self.item_features is None else int(self.item_features.shape[1])

    def project_user_features(self, x: Tensor) -> Tensor:
        """Feature part of layer 0 for users: ``[B, Fu] -> [B, d]`` (zeros without features)."""
        if self.user_proj is None:
            return x.new_zeros(x.shape[0], self.embedding_dim)
        out: Tensor = self.user_proj(x)
        return out

    def project_item_features(self, x: Tensor) -> Tensor:
        """Feature part of layer 0 for items: ``[B, Fi] -> [B, d]`` (zeros without features)."""
        if self.item_proj is None:
            return x.new_zeros(x.shape[0], self.embedding_dim)
        out: Tensor = self.item_proj(x)
        return out

    def user_layer0(self, users: Tensor) -> Tensor:
        """Layer-0 embeddings of some users ``[B] -> [B, d]``."""
        e: Tensor = self.user_embedding(users)
        if self.user_features is not None:
            e = e + self.project_user_features(self.user_features[users])
        return e

    def item_layer0(self, items: Tensor) -> Tensor:
        """Layer-0 embeddings of some items ``[B] -> [B, d]``."""
        e: Tensor = self.item_embedding(items)
        if self.item_features is not None:
            e = e + self.project_item_features(self.item_features[items])
        return e

    def layer0(self) -> tuple[Tensor, Tensor]:
        """Layer-0 embeddings of all users ``[U, d]`` and all items ``[I, d]``."""
        eu: Tensor = self.user_embedding.weight
        ei: Tensor = self.item_embedding.weight
        if self.user_features is not None:
            eu = eu + self.project_user_features(self.user_features)
        if self.item_features is not None:
            ei = ei + self.project_item_features(self.item_features)
        return eu, ei

    def node_layer0(self, nodes: Tensor) -> Tensor:
        """Layer-0 embeddings of graph nodes (users ``< U``, then items) ``[n] -> [n, d]``."""
        is_user = nodes < self.num_users
        out = torch.empty(
            nodes.shape[0],
            self.embedding_dim,
            device=nodes.device,
            dtype=self.user_embedding.weight.dtype,
        )
        out = out.index_put((is_user.nonzero().squeeze(1),), self.user_layer0(nodes[is_user]))
        items = nodes[~is_user] - self.num_users
        return out.index_put(((~is_user).nonzero().squeeze(1),), self.item_layer0(items))

    def propagate(
        self, x0: Tensor, matrix: Tensor, transpose: Tensor | None = None
    ) -> list[Tensor]:
        """``[x0, A x0, ..., A^K x0]`` for layer 0 ``x0`` ``[n, d]`` and sparse ``A`` ``[n, n]``.

        ``transpose`` is ``A``'s transpose; ``None`` declares ``A`` symmetric.
        """
        out = [x0]
        for _ in range(self.num_layers):
            out.append(spmm(matrix, out[-1], transpose))
        return out

    def _check_adjacency(self, adj: NormalizedAdjacency) -> None:
        if adj.num_users != self.num_users or adj.num_items != self.num_items:
            raise ValueError(
                f"adjacency is for {adj.num_users} users x {adj.num_items} items, "
                f"model for {self.num_users} x {self.num_items}"
            )

    def layers(self, adj: NormalizedAdjacency) -> list[Tensor]:
        """Embeddings of every node at layers ``0..K``: ``K+1`` tensors ``[U+I, d]``."""
        self._check_adjacency(adj)
        eu, ei = self.layer0()
        return self.propagate(torch.cat([eu, ei]), adj.matrix, adj.transpose)

    def forward(self, adj: NormalizedAdjacency) -> tuple[Tensor, Tensor]:
        """Final embeddings (mean of layers): users ``[U, d]``, items ``[I, d]``."""
        users, items = torch.split(self.node_embeddings(adj), [self.num_users, self.num_items])
        return users, items

    def node_embeddings(self, adj: NormalizedAdjacency) -> Tensor:
        """Final embeddings of every node, users then items: ``[U+I, d]``."""
        return self.smooth(self.all_layer0(), adj)

    def all_layer0(self) -> Tensor:
        """Layer-0 embeddings of every node, users then items: ``[U+I, d]``."""
        eu, ei = self.layer0()
        return torch.cat([eu, ei])

    def smooth(self, x0: Tensor, adj: NormalizedAdjacency) -> Tensor:
        """The propagation and readout: ``(x0 + Â x0 + ... + Â^K x0) / (K+1)``, ``[U+I, d]``."""
        self._check_adjacency(adj)
        if self.num_layers == 0:
            return x0
        return mean_of_powers(adj.matrix, x0, self.num_layers, adj.transpose)

    def item_layer_sums(self, adj: NormalizedAdjacency) -> Tensor:
        """``S_i = sum_{k=0}^{K-1} e_i^(k)`` for every item ``[I, d]`` (zeros when ``K = 0``).

        With the user's layer 0 and the degrees in ``adj`` this is all the exact
        fold-in needs (see the module docstring).
        """
        layers = self.layers(adj)
        items = [x[self.num_users :] for x in layers[: self.num_layers]]
        if not items:
            return torch.zeros_like(layers[0][self.num_users :])
        total = items[0]
        for x in items[1:]:
            total = total + x
        return total

    def with_item_columns(self, columns: Tensor) -> FeatureLightGCN:
        """A copy of this model with ``k`` more embedding columns, fixed: ``columns`` ``[I, k]``
        in the items' layer 0, zeros in the users' and in the feature projections.

        The copy is a plain ``FeatureLightGCN`` of size ``d + k`` (same propagation, same
        fold-in, same exported scorer); since the blocks never mix, its score is this model's
        plus the LightGCN filter of the columns::

            score'(u, i) = <e_u, e_i> + <x_u, x_i>,   x = readout of [0 (users); columns (items)]

        which is how a graph filter of the form ``r~_u V g(S) V^T`` joins the GNN and keeps
        the serving fold-in exact (:mod:`recsys.training.blend`).
        """
        if columns.shape[0] != self.num_items:
            raise ValueError(f"columns must have one row per item ({self.num_items})")
        fixed = FeatureLightGCN(
            self.num_users,
            self.num_items,
            embedding_dim=int(columns.shape[1]),
            num_layers=self.num_layers,
            user_features=self.user_features,
            item_features=self.item_features,
        ).to(self.user_embedding.weight.device)
        with torch.no_grad():
            fixed.user_embedding.weight.zero_()
            fixed.item_embedding.weight.copy_(columns)
            for proj in (fixed.user_proj, fixed.item_proj):
                if proj is not None:
                    proj.weight.zero_()
                    proj.bias.zero_()
        return self.beside(fixed, 1.0)

    def beside(self, other: FeatureLightGCN, weight: float) -> FeatureLightGCN:
        """One model of size ``d + d'``: this model's columns, then ``other``'s scaled by
        ``sqrt(weight)`` (id tables and feature projections alike).

        Propagation and readout act on every column alike and linearly, so the blocks never
        mix and the score is the two models' weighted sum::

            score'(u, i) = score(u, i) + weight * score_other(u, i)

        on any graph, the serving fold-in's included: a mixture of two trained GNNs is a plain
        ``FeatureLightGCN`` (same exported scorer, same exact fold-in)
        (:mod:`recsys.training.mixture`). Both must share users, items, depth and features.
        """
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        same = (self.num_users, self.num_items, self.num_layers) == (
            other.num_users,
            other.num_items,
            other.num_layers,
        )
        for kind in ("user", "item"):
            mine, theirs = getattr(self, f"{kind}_features"), getattr(other, f"{kind}_features")
            same = same and (mine is None) == (theirs is None)
            same = same and (mine is None or bool(torch.equal(mine, theirs.to(mine))))
        if not same:
            raise ValueError("models side by side must share users, items, layers and features")
        c = math.sqrt(weight)
        out = FeatureLightGCN(
            self.num_users,
            self.num_items,
            embedding_dim=self.embedding_dim + other.embedding_dim,
            num_layers=self.num_layers,
            user_features=self.user_features,
            item_features=self.item_features,
        ).to(self.user_embedding.weight.device)
        with torch.no_grad():
            for name in ("user_embedding", "item_embedding"):
                a, b = getattr(self, name).weight, getattr(other, name).weight
                getattr(out, name).weight.copy_(torch.cat([a, c * b.to(a)], 1))
            for name in ("user_proj", "item_proj"):
                src, extra, dst = getattr(self, name), getattr(other, name), getattr(out, name)
                if src is not None and extra is not None and dst is not None:
                    dst.weight.copy_(torch.cat([src.weight, c * extra.weight.to(src.weight)]))
                    dst.bias.copy_(torch.cat([src.bias, c * extra.bias.to(src.bias)]))
        return out

    @staticmethod
    def readout(layers: list[Tensor]) -> Tensor:
        """Mean of the layer embeddings ``(K+1) x [n, d] -> [n, d]``."""
        if len(layers) == 1:
            return layers[0]
        total = layers[0]
        for x in layers[1:]:
            total = total + x
        return total / len(layers)

    @staticmethod
    def score(user_emb: Tensor, item_emb: Tensor) -> Tensor:
        """Dot-product scores ``[B, d] x [I, d] -> [B, I]``."""
        return user_emb @ item_emb.T
