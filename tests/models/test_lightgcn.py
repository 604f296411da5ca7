from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.models.propagation import CPU_COLUMN_BLOCK, mean_of_powers, spmm


def _graph(
    seed: int = 0, n_users: int = 30, n_items: int = 20, n_edges: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n_edges)
    i = rng.integers(0, n_items, n_edges)
    w = rng.uniform(0.5, 3.0, n_edges).astype(np.float32)
    return u, i, w


def test_sym_adjacency_matches_dense_definition() -> None:
    u, i, w = _graph()
    adj = normalized_adjacency(u, i, w, 30, 20, "sym")
    dense = np.zeros((30, 20))
    np.add.at(dense, (u, i), w)
    du, di = dense.sum(1), dense.sum(0)
    with np.errstate(divide="ignore"):
        r = dense / np.sqrt(np.outer(du, di))
    r[~np.isfinite(r)] = 0
    expect = np.block([[np.zeros((30, 30)), r], [r.T, np.zeros((20, 20))]])
    np.testing.assert_allclose(adj.matrix.to_dense().numpy(), expect, atol=1e-6)
    np.testing.assert_allclose(adj.deg_user.numpy(), du, rtol=1e-6)
    np.testing.assert_allclose(adj.deg_item.numpy(), di, rtol=1e-6)
    assert adj.transpose is None


@pytest.mark.parametrize("norm", ["sym", "mean"])
def test_spmm_gradient_equals_dense(norm: str) -> None:
    u, i, w = _graph(1)
    adj = normalized_adjacency(u, i, w, 30, 20, norm)  # type: ignore[arg-type]
    x = torch.randn(50, 8, requires_grad=True)
    g = torch.randn(50, 8)
    (spmm(adj.matrix, x, adj.transpose) * g).sum().backward()  # type: ignore[no-untyped-call]
    x2 = x.detach().clone().requires_grad_(True)
    (adj.matrix.to_dense() @ x2 * g).sum().backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None and x2.grad is not None
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-5, rtol=1e-5)
    if norm == "mean":  # rows average their neighbours
        rows = adj.matrix.to_dense().sum(1)
        assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]), atol=1e-5)


@pytest.mark.parametrize("norm", ["sym", "mean"])
@pytest.mark.parametrize("dim", [8, CPU_COLUMN_BLOCK, 2 * CPU_COLUMN_BLOCK + 5])
def test_mean_of_powers_equals_dense_filter_and_its_gradient(norm: str, dim: int) -> None:
    """The fused readout (column blocks, wider and narrower than one block) is the dense filter."""
    u, i, w = _graph(3)
    adj = normalized_adjacency(u, i, w, 30, 20, norm)  # type: ignore[arg-type]
    a = adj.matrix.to_dense().double()
    x = torch.randn(50, dim, dtype=torch.float64, requires_grad=True)
    g = torch.randn(50, dim, dtype=torch.float64)
    out = mean_of_powers(
        adj.matrix.double(), x, 3, None if adj.transpose is None else adj.transpose.double()
    )
    (out * g).sum().backward()  # type: ignore[no-untyped-call]
    x2 = x.detach().clone().requires_grad_(True)
    filt = (torch.eye(50, dtype=torch.float64) + a + a @ a + a @ a @ a) / 4
    expect = filt @ x2
    (expect * g).sum().backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None and x2.grad is not None
    torch.testing.assert_close(out, expect, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-12, rtol=1e-10)


def test_forward_equals_mean_of_layers() -> None:
    u, i, w = _graph(4)
    adj = normalized_adjacency(u, i, w, 30, 20, "sym")
    torch.manual_seed(0)
    model = FeatureLightGCN(30, 20, embedding_dim=70, num_layers=3)
    eu, ei = model(adj)
    final = model.readout(model.layers(adj))
    torch.testing.assert_close(torch.cat([eu, ei]), final, atol=1e-6, rtol=1e-5)


def test_fold_in_identity_reproduces_forward_exactly() -> None:
    """e_u = (e0_u + sum_i w_ui / sqrt(d_u d_i) S_i) / (K+1), S_i = sum_{k<K} e_i^(k)."""
    n_users, n_items, k = 30, 20, 3
    u, i, w = _graph(2)
    adj = normalized_adjacency(u, i, w, n_users, n_items, "sym")
    torch.manual_seed(0)
    model = FeatureLightGCN(
        n_users,
        n_items,
        embedding_dim=16,
        num_layers=k,
        user_features=torch.randn(n_users, 5),
        item_features=torch.randn(n_items, 4),
    )
    with torch.no_grad():
        model.user_proj.weight.normal_()  # type: ignore[union-attr]
        users_final, _ = model(adj)
        layers = model.layers(adj)
        e0_user = layers[0][:n_users]
        s_item = torch.stack([layer[n_users:] for layer in layers[:k]]).sum(0)
        torch.testing.assert_close(model.item_layer_sums(adj), s_item)
        # the export engineer's computation, from the interaction list and degrees only
        coef = torch.from_numpy(w).double() / torch.sqrt(
            adj.deg_user[u].double() * adj.deg_item[i].double()
        )
        agg = torch.zeros(n_users, 16, dtype=torch.float64)
        agg.index_add_(0, torch.from_numpy(u), coef.unsqueeze(1) * s_item[i].double())
        folded = (e0_user.double() + agg) / (k + 1)
    torch.testing.assert_close(folded.float(), users_final, atol=1e-6, rtol=1e-5)


def test_features_alone_give_layer0_for_new_nodes() -> None:
    feats = torch.randn(10, 3)
    model = FeatureLightGCN(10, 5, embedding_dim=4, num_layers=2, user_features=feats)
    with torch.no_grad():
        model.user_embedding.weight.zero_()
        eu, _ = model.layer0()
        torch.testing.assert_close(eu, model.project_user_features(feats))
        assert model.project_user_features(feats).abs().sum() > 0
        # without features the projection is zero, not an error
        plain = FeatureLightGCN(10, 5, embedding_dim=4, num_layers=0)
        assert plain.project_user_features(torch.ones(2, 3)).abs().sum() == 0


def test_num_layers_zero_is_matrix_factorisation() -> None:
    u, i, w = _graph(3)
    adj = normalized_adjacency(u, i, w, 30, 20)
    model = FeatureLightGCN(30, 20, embedding_dim=8, num_layers=0)
    eu, ei = model(adj)
    torch.testing.assert_close(eu, model.user_embedding.weight)
    torch.testing.assert_close(ei, model.item_embedding.weight)


def test_node_layer0_matches_full_layer0() -> None:
    model = FeatureLightGCN(
        6,
        4,
        embedding_dim=3,
        num_layers=1,
        user_features=torch.randn(6, 2),
        item_features=torch.randn(4, 2),
    )
    eu, ei = model.layer0()
    nodes = torch.tensor([7, 0, 9, 5, 6])
    full = torch.cat([eu, ei])
    torch.testing.assert_close(model.node_layer0(nodes), full[nodes])


def test_with_item_columns_adds_the_columns_filter_to_the_scores() -> None:
    u, i, w = _graph(5)
    adj = normalized_adjacency(u, i, w, 30, 20, "sym")
    gen = torch.Generator().manual_seed(0)
    model = FeatureLightGCN(
        30,
        20,
        embedding_dim=8,
        num_layers=3,
        user_features=torch.randn(30, 4, generator=gen),
        item_features=torch.randn(20, 3, generator=gen),
    )
    cols = torch.randn(20, 5, generator=gen)
    out = model.with_item_columns(cols)
    assert out.embedding_dim == 13
    with torch.no_grad():
        ue, ie = model(adj)
        ue2, ie2 = out(adj)
        # the filter alone: a model whose layer 0 is [0 (users); cols (items)]
        alone = FeatureLightGCN(30, 20, embedding_dim=5, num_layers=3)
        alone.user_embedding.weight.zero_()
        alone.item_embedding.weight.copy_(cols)
        fu, fi = alone(adj)
    torch.testing.assert_close(ue2 @ ie2.T, ue @ ie.T + fu @ fi.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ue2[:, :8], ue)  # the GNN block is untouched
    # the feature projections reach only the GNN block
    assert out.user_proj is not None and out.item_proj is not None
    assert torch.count_nonzero(out.user_proj.weight[8:]) == 0
    assert torch.count_nonzero(out.item_proj.bias[8:]) == 0
    with pytest.raises(ValueError):
        model.with_item_columns(torch.zeros(19, 2))
