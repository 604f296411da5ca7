from __future__ import annotations

import numpy as np
import torch

from recsys.models.adjacency import normalized_adjacency
from recsys.models.lightgcn import FeatureLightGCN
from recsys.training.data import InteractionData, split_validation
from recsys.training.sampling import NegativeSampler, NeighborSampler, PositiveSampler


def test_negative_sampler_never_returns_a_positive() -> None:
    g = torch.Generator().manual_seed(0)
    n_users, n_items = 50, 40
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(n_users):
        # from 1 item to all but one: the dense users exercise the exact complement path
        k = 1 + (u * (n_items - 2)) // (n_users - 1)
        users += [u] * k
        items += rng.choice(n_items, size=k, replace=False).tolist()
    user, item = torch.tensor(users), torch.tensor(items)
    ns = NegativeSampler(user, item, n_users, n_items, rounds=2)
    pos = set(zip(users, items, strict=True))
    batch = torch.arange(n_users).repeat(20)
    neg = ns.sample(batch, 7, g)
    assert neg.shape == (batch.numel(), 7)
    assert neg.min() >= 0 and neg.max() < n_items
    for u, row in zip(batch.tolist(), neg.tolist(), strict=True):
        assert not any((u, j) in pos for j in row)
    # the user who saw all items but one always gets that one item
    last = n_users - 1
    missing = set(range(n_items)) - {j for (u, j) in pos if u == last}
    assert set(ns.sample(torch.full((100,), last), 3, g).flatten().tolist()) == missing


def test_negative_sampler_is_uniform_over_the_complement() -> None:
    g = torch.Generator().manual_seed(1)
    ns = NegativeSampler(
        torch.zeros(5, dtype=torch.long), torch.tensor([0, 2, 4, 6, 8]), 1, 10, rounds=0
    )  # rounds=0: everything colliding goes through the complement map
    counts = torch.bincount(
        ns.sample(torch.zeros(20000, dtype=torch.long), 1, g).flatten(), minlength=10
    )
    assert counts[[0, 2, 4, 6, 8]].sum() == 0
    free = counts[[1, 3, 5, 7, 9]].double() / 20000
    assert torch.allclose(free, torch.full((5,), 0.2, dtype=torch.float64), atol=0.02)


def test_positive_sampler_follows_edge_weights() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([1.0, 3.0, 0.0, 6.0])
    ps = PositiveSampler(w)
    draws = torch.cat([ps.epoch(g) for _ in range(5000)])
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    assert freq[2] == 0
    assert torch.allclose(freq, (w / w.sum()).double(), atol=0.01)
    uniform = PositiveSampler(torch.ones(7))
    assert sorted(uniform.epoch(g).tolist()) == list(range(7))  # a permutation per epoch


def _graph() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 60, 500),
        rng.integers(0, 40, 500),
        rng.uniform(0.5, 2, 500).astype(np.float32),
    )


def test_neighbor_sampler_returns_only_true_neighbours() -> None:
    u, i, w = _graph()
    adj = normalized_adjacency(u, i, w, 60, 40)
    edges = set(zip(u.tolist(), (i + 60).tolist(), strict=True))
    edges |= {(b, a) for a, b in edges}
    sampler = NeighborSampler.from_csr(adj.matrix)
    g = torch.Generator().manual_seed(0)
    seeds = torch.tensor([0, 3, 61, 75, 3])
    sub = sampler.sample(seeds, [3, 2, 2], g)
    pairs = zip(sub.edge_target.tolist(), sub.edge_source.tolist(), strict=True)
    assert all(p in edges for p in pairs)
    assert torch.equal(sub.nodes[sub.seed_index], seeds)
    # every sampled node with more neighbours than the fanout kept exactly fanout draws
    deg = torch.bincount(torch.from_numpy(np.concatenate([u, i + 60])), minlength=100)
    first_hop = torch.isin(sub.edge_target, torch.unique(seeds))
    tgt = sub.edge_target[first_hop]
    for s in torch.unique(seeds).tolist():
        assert (tgt == s).sum() == min(int(deg[s]), 3)


def test_neighbor_sampling_with_full_fanout_is_exact() -> None:
    u, i, w = _graph()
    adj = normalized_adjacency(u, i, w, 60, 40)
    torch.manual_seed(0)
    model = FeatureLightGCN(60, 40, embedding_dim=8, num_layers=3)
    eu, ei = model(adj)
    full = torch.cat([eu, ei])
    seeds = torch.tensor([1, 5, 60, 99, 20])
    sub = NeighborSampler.from_csr(adj.matrix).sample(seeds, [1000] * 3, torch.Generator())
    x0 = model.node_layer0(sub.nodes)
    out = model.readout(model.propagate(x0, sub.matrix, sub.transpose))[sub.seed_index]
    torch.testing.assert_close(out, full[seeds], atol=1e-6, rtol=1e-5)


def test_neighbor_sampling_is_unbiased_for_one_hop() -> None:
    u, i, w = _graph()
    adj = normalized_adjacency(u, i, w, 60, 40)
    x = torch.randn(100, 4)
    exact = (adj.matrix @ x)[:10]
    sampler = NeighborSampler.from_csr(adj.matrix)
    g = torch.Generator().manual_seed(0)
    seeds = torch.arange(10)
    acc = torch.zeros(10, 4)
    for _ in range(400):
        sub = sampler.sample(seeds, [2], g)
        acc += (sub.matrix @ x[sub.nodes])[sub.seed_index]
    err = (acc / 400 - exact).abs().mean()
    one = sampler.sample(seeds, [2], g)
    single = ((one.matrix @ x[one.nodes])[one.seed_index] - exact).abs().mean()
    assert err < 0.05 and err < single / 4  # the average converges; one draw is far off


def test_validation_split_is_carved_from_train_and_disjoint() -> None:
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(50), 20)
    i = rng.integers(0, 80, u.size)
    data = InteractionData(50, 80, u, i, np.ones(u.size, np.float32))
    split = split_validation(data, 0.2, seed=3)
    train_pairs = set(
        zip(split.train.train_user.tolist(), split.train.train_item.tolist(), strict=True)
    )
    val_pairs = list(zip(split.val_user.tolist(), split.val_item.tolist(), strict=True))
    assert val_pairs and not train_pairs & set(val_pairs)
    assert split.train.n_interactions + 0 < data.n_interactions
    assert set(split.train.train_user.tolist()) == set(range(50))  # every user keeps items
    again = split_validation(data, 0.2, seed=3)
    assert np.array_equal(again.val_item, split.val_item)
