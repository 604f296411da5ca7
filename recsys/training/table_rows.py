"""A step's rows as positions in an embedding table, and the losses taken on them there.

A training step uses a few rows of a node table ``x`` ``[N, d]`` per positive: the
user's, the positive item's and ``n`` negatives'. Gathering them into ``[B, 2+n, d]``
tensors, and scattering their gradient back, moves ``B (2+n) d`` floats several times;
at Gowalla's ``B=65,536``, ``n=4``, ``d=256`` that is 400 MB a pass, more time than the
loss itself. :class:`TableRows` keeps the table and the positions instead, and computes

- the L2 term on the whole table with each row weighted by how often the step uses it
  (:meth:`TableRows.l2`: the same value and gradient, from ``N`` rows instead of
  ``B (2+n)``), and
- BPR in blocks of rows that stay in cache, with its gradient written straight into the
  table's (:func:`bpr_on_rows`),

falling back to gathering (:meth:`TableRows.gather`) for every other loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

BPR_BLOCK_ROWS = 2048


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a 2-D ``x`` and any-shaped ``index``: ``[*index.shape, d]``.

    Not ``x[index]``: the backward of advanced indexing on CPU is
    ``index_put_(accumulate=True)``, which accumulates rows hit more than once
    (a popular item in a batch) with parallel atomic adds, so the summation
    order, and the weights' last bits, change from run to run whenever torch
    uses several threads. ``index_select``'s backward (``index_add_``) adds in
    a fixed order on CPU, at no measurable cost.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, x.shape[-1])


def mean_sq_norm(x: Tensor) -> Tensor:
    """The mean over the rows of ``x`` ``[..., d]`` of their squared norms, as one dot product.

    Not ``x.square().sum(-1).mean()``: its backward goes through a generic ``pow`` kernel,
    twice as slow on CPU as the dot product's two multiplications (the L2 term of a
    Gowalla step: benchmarks/RESULTS.md).
    """
    v = x.reshape(-1)
    return torch.dot(v, v) / max(v.numel() // x.shape[-1], 1)


class _BPROnRows(torch.autograd.Function):
    """``mean_{b,j} softplus(<x_u, x_nj> - <x_u, x_p>)``, forward and backward in row blocks."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, iu: Tensor, ip: Tensor, ineg: Tensor) -> Tensor:
        b, n = ineg.shape
        total = x.new_zeros((), dtype=torch.float64)
        slope = x.new_empty((b, n))  # sigmoid(s_neg - s_pos): d softplus / d its argument
        for s in range(0, b, BPR_BLOCK_ROWS):
            e = s + BPR_BLOCK_ROWS
            eu, ep = x.index_select(0, iu[s:e]), x.index_select(0, ip[s:e])
            en = gather_rows(x, ineg[s:e])
            diff = torch.bmm(en, eu.unsqueeze(2)).squeeze(2) - (eu * ep).sum(1, keepdim=True)
            total += F.softplus(diff).sum(dtype=torch.float64)
            slope[s:e] = torch.sigmoid(diff)
        ctx.save_for_backward(x, iu, ip, ineg, slope)
        return (total / max(b * n, 1)).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        x, iu, ip, ineg, slope = ctx.saved_tensors
        b, n = ineg.shape
        out = torch.zeros_like(x)
        coef = slope * (grad / max(b * n, 1))  # dL / d s_neg; dL / d s_pos = -its row sum
        for s in range(0, b, BPR_BLOCK_ROWS):
            e = s + BPR_BLOCK_ROWS
            c = coef[s:e]
            eu, ep = x.index_select(0, iu[s:e]), x.index_select(0, ip[s:e])
            en = gather_rows(x, ineg[s:e])
            c_pos = c.sum(1, keepdim=True)
            g_u = torch.bmm(c.unsqueeze(1), en).squeeze(1) - c_pos * ep
            g_n = c.unsqueeze(2) * eu.unsqueeze(1)
            rows = torch.cat([iu[s:e], ip[s:e], ineg[s:e].reshape(-1)])
            out.index_add_(0, rows, torch.cat([g_u, -c_pos * eu, g_n.reshape(-1, x.shape[1])]))
        return out, None, None, None


def bpr_on_rows(x: Tensor, iu: Tensor, ip: Tensor, ineg: Tensor) -> Tensor:
    """BPR over table rows: ``mean_{b,j} softplus(<x_{iu_b}, x_{ineg_bj}> - <x_{iu_b}, x_{ip_b}>)``.

    ``x`` ``[N, d]``; ``iu``, ``ip`` ``[B]`` and ``ineg`` ``[B, n]`` row positions. Equal
    to :func:`recsys.training.losses.bpr` of the gathered rows' scores, value and gradient
    (tested), but gathers ``BPR_BLOCK_ROWS`` positives at a time, twice (forward and
    backward), and adds their gradient into ``x``'s in a fixed order (deterministic on
    CPU), never holding the ``[B, 2+n, d]`` rows or their gradient.
    """
    out: Tensor = _BPROnRows.apply(x, iu, ip, ineg)  # type: ignore[no-untyped-call]
    return out


@dataclass
class TableRows:
    """Where a step's rows sit in a node table ``x`` ``[N, d]``: users ``iu`` ``[B]``,
    positives ``ip`` ``[B]``, negatives ``ineg`` ``[B, n]`` (per positive) or ``[M]``
    (shared by the batch)."""

    x: Tensor
    iu: Tensor
    ip: Tensor
    ineg: Tensor

    def gather(self) -> tuple[Tensor, Tensor, Tensor]:
        """``eu``, ``ep`` ``[B, d]`` and ``en`` ``[*ineg.shape, d]``, in one gather (one
        scatter in the backward)."""
        b, flat = self.iu.numel(), self.ineg.reshape(-1)
        rows = torch.cat([self.iu, self.ip, flat])
        eu, ep, en = torch.split(gather_rows(self.x, rows), [b, b, flat.numel()])
        return eu, ep, en.view(*self.ineg.shape, -1)

    def l2(self) -> Tensor:
        """``0.5 * (mean_b |x_u|^2 + mean_b |x_p|^2 + mean_neg |x_n|^2)``.

        Computed on whichever is smaller: the gathered rows, or the whole table with each
        row weighted by how often the step uses it (same value and gradient).
        """
        parts = (self.iu, self.ip, self.ineg.reshape(-1))
        if sum(int(i.numel()) for i in parts) < self.x.shape[0]:
            return 0.5 * sum(
                (mean_sq_norm(gather_rows(self.x, i)) for i in parts), self.x.new_zeros(())
            )
        weight = torch.zeros(self.x.shape[0], dtype=self.x.dtype, device=self.x.device)
        for i in parts:
            if i.numel():
                weight += torch.bincount(i, minlength=weight.numel()).to(weight.dtype) / i.numel()
        return 0.5 * torch.dot((self.x * self.x).sum(1), weight)

    def bpr(self) -> Tensor:
        """BPR of the per-positive negatives (:func:`bpr_on_rows`)."""
        if self.ineg.dim() != 2:
            raise ValueError("BPR needs per-positive negatives [B, n]")
        return bpr_on_rows(self.x, self.iu, self.ip, self.ineg)
