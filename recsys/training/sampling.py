"""Vectorised samplers: positives by edge weight, negatives, and neighbourhoods.

Everything works on whole tensors (no Python loop per sample), on the device
of the inputs, driven by an explicit ``torch.Generator`` so runs are seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class PositiveSampler:
    """Draws training edges for an epoch, with probability proportional to their weight.

    Unit (all-equal) weights use a permutation, so every edge is seen once per
    epoch; otherwise ``E`` edges are drawn with replacement by inverse CDF.
    """

    def __init__(self, weight: Tensor) -> None:
        if weight.numel() == 0:
            raise ValueError("no training interactions")
        w = weight.double()
        if float(w.min()) < 0 or float(w.sum()) <= 0:
            raise ValueError("edge weights must be non-negative with a positive sum")
        self.n = int(w.numel())
        self.uniform = bool(torch.all(w == w[0]))
        cdf = torch.cumsum(w, 0)
        self.cdf = (cdf / cdf[-1]).to(torch.float64)

    def epoch(self, generator: torch.Generator) -> Tensor:
        """Edge indices ``[E]`` for one epoch."""
        device = self.cdf.device
        if self.uniform:
            return torch.randperm(self.n, generator=generator, device=device)
        r = torch.rand(self.n, generator=generator, device=device, dtype=torch.float64)
        return torch.searchsorted(self.cdf, r, right=True).clamp_(max=self.n - 1)


class NegativeSampler:
    """Uniform items that the user has not interacted with.

    Membership of ``(u, i)`` is a binary search of ``u * I + i`` in the sorted
    keys of the positives. Collisions are redrawn in bulk a few rounds; rows
    still colliding (users who saw most of the catalogue) are then drawn
    exactly from the complement: with the user's sorted positives ``p_j`` and
    ``q_j = p_j - j``, the ``r``-th non-positive item is ``r + #{j : q_j <= r}``.
    """

    def __init__(
        self, user: Tensor, item: Tensor, n_users: int, n_items: int, rounds: int = 8
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.rounds = rounds
        keys = torch.unique(user.long() * n_items + item.long())  # sorted
        self.keys = keys
        pos_user = keys // n_items
        counts = torch.bincount(pos_user, minlength=n_users)
        self.degree = counts
        self.rowptr = torch.zeros(n_users + 1, dtype=torch.int64, device=keys.device)
        self.rowptr[1:] = torch.cumsum(counts, 0)
        rank = torch.arange(keys.numel(), device=keys.device) - self.rowptr[pos_user]
        # q_j = p_j - j, offset by user so one sorted array serves every user
        self.qkeys = pos_user * n_items + (keys % n_items - rank)

    def to(self, device: str | torch.device) -> NegativeSampler:
        for name in ("keys", "degree", "rowptr", "qkeys"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def has_negative(self, users: Tensor) -> Tensor:
        """Whether each user has at least one item to use as a negative."""
        return self.degree[users] < self.n_items

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Membership of each ``(users[j], items[j])`` among the positives (same shapes)."""
        if self.keys.numel() == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        k = users * self.n_items + items
        idx = torch.searchsorted(self.keys, k).clamp_(max=self.keys.numel() - 1)
        found: Tensor = self.keys[idx] == k
        return found

    def sample(self, users: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """``[B, n]`` items, none of them a positive of its row's user.

        Every user in ``users`` must have a negative (see :meth:`has_negative`).
        """
        if not bool(self.has_negative(users).all()):
            raise ValueError("a user has interacted with every item: no negative exists")
        u = users.long().unsqueeze(1).expand(-1, n)
        items = torch.randint(self.n_items, u.shape, generator=generator, device=users.device)
        bad = self.is_positive(u, items)
        for _ in range(self.rounds):
            if not bool(bad.any()):
                return items
            redraw = torch.randint(
                self.n_items, (int(bad.sum()),), generator=generator, device=users.device
            )
            items[bad] = redraw
            bad[bad.clone()] = self.is_positive(u[bad], redraw)
        if bool(bad.any()):
            items[bad] = self._complement(u[bad], generator)
        return items

    def _complement(self, users: Tensor, generator: torch.Generator) -> Tensor:
        free = (self.n_items - self.degree[users]).double()
        r = (
            torch.rand(users.shape, generator=generator, device=users.device, dtype=torch.float64)
            * free
        ).long()
        q = users * self.n_items + r
        below = torch.searchsorted(self.qkeys, q, right=True) - self.rowptr[users]
        return r + below


@dataclass(frozen=True)
class SampledSubgraph:
    """A sampled neighbourhood: ``nodes`` (global ids ``[n]``), local sparse ``matrix``
    ``[n, n]`` (row = target, col = source) and its ``transpose``, and ``seed_index``
    (position of each seed, in the order given, within ``nodes``)."""

    nodes: Tensor
    matrix: Tensor
    transpose: Tensor
    seed_index: Tensor
    edge_target: Tensor
    edge_source: Tensor


class NeighborSampler:
    """K-hop neighbour sampling over a CSR adjacency, all in torch.

    At hop ``h`` every newly reached node keeps all its neighbours when it has
    at most ``fanouts[h]`` of them, else draws ``fanouts[h]`` with replacement
    and scales each kept edge by ``degree / fanout``, so ``A_sampled @ x`` is an
    unbiased estimate of ``A @ x`` at that node. With fanouts at least the
    largest degree the seeds' ``K``-layer propagation is exact.
    """

    def __init__(self, rowptr: Tensor, col: Tensor, value: Tensor) -> None:
        self.rowptr = rowptr.long()
        self.col = col.long()
        self.value = value.float()
        self.n = int(rowptr.numel() - 1)

    @classmethod
    def from_csr(cls, matrix: Tensor) -> NeighborSampler:
        return cls(matrix.crow_indices(), matrix.col_indices(), matrix.values())

    def _expand(
        self, nodes: Tensor, fanout: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        start = self.rowptr[nodes]
        deg = self.rowptr[nodes + 1] - start
        take_all = deg <= fanout
        # every neighbour of the low-degree nodes
        a_nodes, a_start, a_deg = nodes[take_all], start[take_all], deg[take_all]
        a_tgt = torch.repeat_interleave(a_nodes, a_deg)
        offs = torch.arange(int(a_deg.sum()), device=nodes.device)
        offs = offs - torch.repeat_interleave(torch.cumsum(a_deg, 0) - a_deg, a_deg)
        a_pos = torch.repeat_interleave(a_start, a_deg) + offs
        a_val = self.value[a_pos]
        # fanout draws with replacement for the others
        s_nodes, s_start, s_deg = nodes[~take_all], start[~take_all], deg[~take_all]
        r = torch.rand((s_nodes.numel(), fanout), generator=generator, device=nodes.device)
        s_pos = (s_start.unsqueeze(1) + (r * s_deg.unsqueeze(1)).long()).reshape(-1)
        s_tgt = s_nodes.repeat_interleave(fanout)
        s_val = self.value[s_pos] * (s_deg.float() / fanout).repeat_interleave(fanout)
        tgt = torch.cat([a_tgt, s_tgt])
        src = self.col[torch.cat([a_pos, s_pos])]
        return tgt, src, torch.cat([a_val, s_val])

    def sample(
        self, seeds: Tensor, fanouts: list[int], generator: torch.Generator
    ) -> SampledSubgraph:
        """Sample ``len(fanouts)`` hops around ``seeds`` (global node ids, may repeat)."""
        device = seeds.device
        visited = torch.zeros(self.n, dtype=torch.bool, device=device)
        frontier = torch.unique(seeds)
        visited[frontier] = True
        tgts, srcs, vals = [], [], []
        for fanout in fanouts:
            if frontier.numel() == 0:
                break
            t, s, v = self._expand(frontier, fanout, generator)
            tgts.append(t)
            srcs.append(s)
            vals.append(v)
            new = torch.unique(s)
            frontier = new[~visited[new]]
            visited[frontier] = True
        nodes = visited.nonzero().squeeze(1)  # sorted global ids
        local = torch.full((self.n,), -1, dtype=torch.int64, device=device)
        local[nodes] = torch.arange(nodes.numel(), device=device)
        tgt = torch.cat(tgts) if tgts else seeds.new_zeros(0)
        src = torch.cat(srcs) if srcs else seeds.new_zeros(0)
        val = torch.cat(vals) if vals else torch.zeros(0, device=device)
        n = int(nodes.numel())
        lt, ls = local[tgt], local[src]
        matrix = torch.sparse_coo_tensor(torch.stack([lt, ls]), val, (n, n)).coalesce()
        transpose = torch.sparse_coo_tensor(torch.stack([ls, lt]), val, (n, n)).coalesce()
        return SampledSubgraph(
            nodes=nodes,
            matrix=matrix.to_sparse_csr(),
            transpose=transpose.to_sparse_csr(),
            seed_index=local[seeds],
            edge_target=tgt,
            edge_source=src,
        )
