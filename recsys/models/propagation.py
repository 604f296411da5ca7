"""Sparse-dense products with a cheap backward.

``Y = A @ X`` with a constant sparse ``A`` has ``dL/dX = A^T @ dL/dY``. Torch's
generic sparse autograd builds a transposed COO on every call; here the
transpose is supplied once (or is ``A`` itself when ``A`` is symmetric, as the
``sym``-normalised LightGCN adjacency is), so the backward is one more CSR SpMM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:
        ctx.a_t = a_t
        out: Tensor = torch.sparse.mm(a, x)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor | None]:
        if not ctx.needs_input_grad[2]:
            return None, None, None
        return None, None, torch.sparse.mm(ctx.a_t, grad.contiguous())


def spmm(a: Tensor, x: Tensor, a_t: Tensor | None = None) -> Tensor:
    """``a @ x`` for a constant sparse ``a`` ``[N, M]`` and dense ``x`` ``[M, d]``.

    ``a_t`` is ``a``'s transpose; ``None`` declares ``a`` symmetric.
    """
    out: Tensor = _SpMM.apply(a, a if a_t is None else a_t, x)  # type: ignore[no-untyped-call]
    return out
