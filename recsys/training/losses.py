"""Ranking losses: pure functions of scores (or embeddings), no model, no state.

Notation: ``B`` positives ``(u, p)`` per batch, ``s_up = <e_u, e_p>`` their
scores; negatives are either per positive (``[B, n]`` scores, BPR's hard
negatives) or ``M`` items shared by the whole batch (``[B, M]`` scores: one
``[B, d] x [d, M]`` product, which is how softmax affords thousands of them).
Every loss is a mean over the batch.

- :func:`bpr` (Rendle et al. 2009)::

      L = mean_{b, j} softplus(s_bj - s_bp)

- :func:`softmax` (sampled softmax / InfoNCE with temperature ``tau``)::

      L = mean_b [ log( exp(s_bp / tau_b) + sum_j m_bj exp(s_bj / tau_b - c_j) ) - s_bp / tau_b ]

  ``m_bj`` masks a negative that is the row's own positive (in-batch negatives
  contain the batch's positives); ``c_j = log q_j`` is the optional log-Q
  correction of a non-uniform negative distribution ``q`` (Yi et al. 2019).
  With every non-positive item as a negative and ``c = 0`` this is the full
  softmax cross-entropy; sampling ``M`` of them estimates its gradient.
  ``tau_b`` is a scalar or one temperature per row (:func:`adaptive_temperature`).

- :func:`adaptive_temperature` (after Adap-tau, Chen et al. 2023): per-user
  temperatures from the users' recent losses, larger for users the model fits
  worse (their negatives are less trustworthy), smaller for those it fits well::

      tau_u = tau * exp(W(clamp((l_u - mean_v l_v) / spread, -1/e)))

  with ``W`` the principal branch of Lambert's W (so ``tau_u`` lies in
  ``[tau / e, oo)`` and equals ``tau`` for an average user).

- :func:`info_nce` (a contrastive regulariser between two views of the same
  nodes, e.g. a node's layer-0 and final embeddings)::

      L = mean_b [ log sum_c exp(<a_b, b_c> / tau) - <a_b, b_b> / tau ],  a, b L2-normalised

Scores stay dot products in every case: a loss may normalise the embeddings it
is given (``cosine``), but the served score is the model's dot product, so the
exact fold-in and the ONNX scorer do not depend on the loss.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "adaptive_temperature",
    "bpr",
    "info_nce",
    "lambert_w",
    "scores",
    "softmax",
]


def scores(user: Tensor, pos: Tensor, neg: Tensor) -> tuple[Tensor, Tensor]:
    """``(s_pos [B], s_neg)`` from ``user``, ``pos`` ``[B, d]`` and ``neg``.

    ``neg`` ``[B, n, d]`` (per-positive negatives) gives ``s_neg`` ``[B, n]``;
    ``neg`` ``[M, d]`` (negatives shared by the batch) gives ``[B, M]``.
    """
    s_pos = (user * pos).sum(-1)
    if neg.dim() == 3:
        return s_pos, torch.bmm(neg, user.unsqueeze(2)).squeeze(2)
    return s_pos, user @ neg.T


def bpr(pos: Tensor, neg: Tensor) -> Tensor:
    """``mean softplus(neg - pos)`` for scores ``pos`` ``[B]`` and ``neg`` ``[B, n]``."""
    return F.softplus(neg - pos.unsqueeze(1)).mean()


def softmax(
    pos: Tensor,
    neg: Tensor,
    temperature: float | Tensor,
    neg_mask: Tensor | None = None,
    log_q: Tensor | None = None,
    reduce: bool = True,
) -> Tensor:
    """Sampled-softmax cross-entropy (module docstring): ``pos`` ``[B]`` vs ``neg`` ``[B, M]``.

    ``temperature``: a float or ``[B]``; ``neg_mask``: bool ``[B, M]``, True where
    a negative is valid (``None``: all); ``log_q``: ``[M]`` (or ``[B, M]``)
    log-probabilities of drawing each negative, subtracted from its logit.
    ``reduce=False`` returns the per-row losses ``[B]``.
    """
    tau = temperature.unsqueeze(1) if isinstance(temperature, Tensor) else temperature
    pos_logit = pos.unsqueeze(1) / tau  # [B, 1]
    neg_logit = neg / tau
    if log_q is not None:
        neg_logit = neg_logit - log_q
    if neg_mask is not None:
        neg_logit = neg_logit.masked_fill(~neg_mask, -math.inf)
    pos_logit = pos_logit.squeeze(1)
    per_row = torch.logaddexp(pos_logit, torch.logsumexp(neg_logit, dim=1)) - pos_logit
    return per_row.mean() if reduce else per_row


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """InfoNCE between two views ``a``, ``b`` ``[B, d]`` of the same nodes (module docstring)."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()


def lambert_w(x: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Principal branch ``W(x)`` (``W e^W = x``) for ``x >= -1/e``, by Halley's iteration.

    float64; accurate to ~1e-12 over ``[-1/e, 1e6]`` (tested against scipy). Not scipy's
    ``lambertw`` itself: it returns NaN at the branch point ``-1/e`` (W = -1), where the
    adaptive temperature of a user whose loss is already minimal lands.
    """
    x = np.asarray(x, dtype=np.float64)
    if np.any(x < -1.0 / math.e - 1e-12):
        raise ValueError("lambert_w is real only for x >= -1/e")
    x = np.maximum(x, -1.0 / math.e)
    # start: the branch-point expansion near -1/e, log1p elsewhere
    p = np.sqrt(np.maximum(2.0 * (math.e * x + 1.0), 0.0))
    w = np.where(x < -0.25, -1.0 + p - p * p / 3.0, np.log1p(x))
    big = x > 3.0
    lx = np.log(np.where(big, x, 3.0))
    w = np.where(big, lx - np.log(lx), w)
    for _ in range(iterations):
        ew = np.exp(w)
        f = w * ew - x
        wp1 = w + 1.0
        denom = ew * wp1 - (w + 2.0) * f / np.where(np.abs(wp1) < 1e-12, 1e-12, 2.0 * wp1)
        step = np.where(np.abs(denom) < 1e-300, 0.0, f / np.where(denom == 0, 1.0, denom))
        w = w - step
    out: np.ndarray = np.maximum(w, -1.0)
    return out


def adaptive_temperature(user_loss: np.ndarray, temperature: float, spread: float) -> np.ndarray:
    """Per-user temperatures ``[U]`` from each user's mean loss ``[U]`` (module docstring).

    Users without a finite loss (not seen yet) get ``temperature``.
    """
    loss = np.asarray(user_loss, dtype=np.float64)
    seen = np.isfinite(loss)
    out = np.full(loss.shape, float(temperature))
    if not seen.any():
        return out
    x = (loss[seen] - loss[seen].mean()) / spread
    out[seen] = temperature * np.exp(lambert_w(np.clip(x, -1.0 / math.e, 1e6)))
    return out
