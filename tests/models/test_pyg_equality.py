"""Our propagation against PyTorch Geometric's LightGCN on random weighted graphs.

PyG's ``LGConv`` normalises with ``gcn_norm`` (no self loops):
``w_ij / sqrt(deg_i deg_j)`` with weighted degrees, the ``sym`` adjacency of
:mod:`recsys.models.adjacency`; its ``LightGCN`` model averages the layers with
``alpha = 1 / (K + 1)``, our readout.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import LGConv
from torch_geometric.nn.models import LightGCN

from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN


def _weighted_graph(
    seed: int, n_users: int, n_items: int, n_edges: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # distinct pairs (PyG does not sum duplicate edges before normalising, we do)
    keys = rng.choice(n_users * n_items, size=n_edges, replace=False)
    w = rng.uniform(0.2, 5.0, n_edges).astype(np.float32)
    return keys // n_items, keys % n_items, w


def _pyg_edges(
    u: np.ndarray, i: np.ndarray, w: np.ndarray, n_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    src = np.concatenate([u, i + n_users])
    dst = np.concatenate([i + n_users, u])
    edge_index = torch.from_numpy(np.stack([src, dst])).long()
    return edge_index, torch.from_numpy(np.concatenate([w, w]))


@pytest.mark.parametrize(
    ("seed", "n_users", "n_items", "n_edges"),
    [(0, 40, 25, 300), (1, 7, 90, 150), (2, 200, 60, 900)],
)
def test_each_layer_equals_pyg_lgconv(seed: int, n_users: int, n_items: int, n_edges: int) -> None:
    u, i, w = _weighted_graph(seed, n_users, n_items, n_edges)
    adj = normalized_adjacency(u, i, w, n_users, n_items, "sym")
    torch.manual_seed(seed)
    model = FeatureLightGCN(n_users, n_items, embedding_dim=16, num_layers=3)
    ours = model.layers(adj)
    edge_index, edge_weight = _pyg_edges(u, i, w, n_users)
    conv = LGConv(normalize=True)
    x = ours[0]
    for k in range(1, 4):
        x = conv(x, edge_index, edge_weight)
        torch.testing.assert_close(ours[k], x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_final_embeddings_equal_pyg_lightgcn(num_layers: int) -> None:
    n_users, n_items = 60, 45
    u, i, w = _weighted_graph(3 + num_layers, n_users, n_items, 500)
    adj = normalized_adjacency(u, i, w, n_users, n_items, "sym")
    torch.manual_seed(0)
    model = FeatureLightGCN(n_users, n_items, embedding_dim=48, num_layers=num_layers)
    pyg = LightGCN(n_users + n_items, embedding_dim=48, num_layers=num_layers)
    with torch.no_grad():
        pyg.embedding.weight.copy_(
            torch.cat([model.user_embedding.weight, model.item_embedding.weight])
        )
        users, items = model(adj)  # the fused column-blocked readout (48 > one 32-wide block)
    edge_index, edge_weight = _pyg_edges(u, i, w, n_users)
    with torch.no_grad():
        ref = pyg.get_embedding(edge_index, edge_weight)
    torch.testing.assert_close(torch.cat([users, items]), ref, rtol=1e-5, atol=1e-6)
    # and the scores: PyG's forward on (user, item) pairs is the same dot product
    with torch.no_grad():
        pairs = torch.stack([torch.arange(10), torch.arange(10) + n_users])
        expect = pyg(edge_index, pairs, edge_weight)
    torch.testing.assert_close(
        FeatureLightGCN.score(users[:10], items[:10]).diagonal(), expect, rtol=1e-5, atol=1e-6
    )
