"""Sparse-dense products with a cheap backward.

``Y = A @ X`` with a constant sparse ``A`` has ``dL/dX = A^T @ dL/dY``. Torch's
generic sparse autograd builds a transposed COO on every call; here the
transpose is supplied once (or is ``A`` itself when ``A`` is symmetric, as the
``sym``-normalised LightGCN adjacency is), so the backward is one more CSR SpMM.

On CPU the product runs over column blocks of ``x`` (32 wide): each nonzero
then touches a 128-byte slice of a row, and a block of all rows stays in the
last-level cache. Measured on Gowalla (70,839 nodes, 1.62M nonzeros, 2 cores):
``d=64`` 0.060 s in one product vs 0.020 s in blocks, ``d=128`` 0.097 vs
0.055 s (benchmarks/RESULTS.md). The sums are the same per output element.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

CPU_COLUMN_BLOCK = 32


def _mm(a: Tensor, x: Tensor) -> Tensor:
    d = x.shape[1]
    if x.device.type != "cpu" or d <= CPU_COLUMN_BLOCK:
        out: Tensor = torch.sparse.mm(a, x)
        return out
    blocks = [
        torch.sparse.mm(a, x[:, c : c + CPU_COLUMN_BLOCK].contiguous())
        for c in range(0, d, CPU_COLUMN_BLOCK)
    ]
    return torch.cat(blocks, dim=1)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:
        ctx.a_t = a_t
        return _mm(a, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor | None]:
        if not ctx.needs_input_grad[2]:
            return None, None, None
        return None, None, _mm(ctx.a_t, grad.contiguous())


def spmm(a: Tensor, x: Tensor, a_t: Tensor | None = None) -> Tensor:
    """``a @ x`` for a constant sparse ``a`` ``[N, M]`` and dense ``x`` ``[M, d]``.

    ``a_t`` is ``a``'s transpose; ``None`` declares ``a`` symmetric.
    """
    out: Tensor = _SpMM.apply(a, a if a_t is None else a_t, x)  # type: ignore[no-untyped-call]
    return out


def _mean_of_powers(a: Tensor, x: Tensor, num_layers: int) -> Tensor:
    """``(x + A x + ... + A^K x) / (K+1)`` computed one column block at a time on CPU."""
    d = x.shape[1]
    step = CPU_COLUMN_BLOCK if x.device.type == "cpu" else max(d, 1)
    out = torch.empty_like(x)
    for c in range(0, d, step):
        layer = x[:, c : c + step].contiguous()
        total = layer.clone()
        for _ in range(num_layers):
            layer = torch.sparse.mm(a, layer)
            total += layer
        out[:, c : c + step] = total
    return out.div_(num_layers + 1)


class _MeanOfPowers(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, a_t: Tensor, x: Tensor, num_layers: int) -> Tensor:
        ctx.a_t = a_t
        ctx.num_layers = num_layers
        return _mean_of_powers(a, x, num_layers)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor | None, None]:
        if not ctx.needs_input_grad[2]:
            return None, None, None, None
        # the adjoint of sum_k A^k / (K+1) is sum_k (A^T)^k / (K+1)
        return None, None, _mean_of_powers(ctx.a_t, grad.contiguous(), ctx.num_layers), None


def mean_of_powers(a: Tensor, x: Tensor, num_layers: int, a_t: Tensor | None = None) -> Tensor:
    """LightGCN's readout of ``K`` propagations in one op: ``(x + A x + ... + A^K x) / (K+1)``.

    ``x`` ``[N, d]``, ``a`` sparse ``[N, N]``; ``a_t`` its transpose (``None``:
    ``a`` is symmetric). Equal to averaging :func:`spmm`'s layers, but keeps no
    intermediate layer for the backward (which is the same filter with ``A^T``)
    and, on CPU, runs every layer of a column block while it is in cache.
    """
    out: Tensor = _MeanOfPowers.apply(  # type: ignore[no-untyped-call]
        a, a if a_t is None else a_t, x, num_layers
    )
    return out
