"""Spectral initialisation of the id embeddings, and the spectral basis it comes from.

The top-``d`` singular triplets of the normalised interaction matrix
``R~ = D_U^-1/2 R D_I^-1/2 ~ U S V^T`` give layer-0 embeddings
``E_user = c U S^1/2`` and ``E_item = c V S^1/2``. Since ``R~ V = U S``, one
propagation layer maps them to ``U S^3/2`` and ``V S^3/2``: the LightGCN readout
of this start is the low-pass spectral filter ``U f(S)^2 V^T`` with
``f(s) = s^1/2 (1 + s + ... + s^K) / (K+1)``, already a sensible ranker, so
BPR starts from there instead of from noise and converges in far fewer epochs.
``c`` scales the start to the std of the random init (the scale does not
change the ranking but sets the BPR margins the optimiser starts from).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def normalized_svd(
    user: np.ndarray,
    item: np.ndarray,
    weight: np.ndarray,
    n_users: int,
    n_items: int,
    k: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U [U, k'], s [k'], V^T [k', I])``: the top singular triplets of ``R~`` (float64).

    Ordered by decreasing singular value with deterministic signs; ``k' <= k`` when the
    graph has fewer usable directions. Rows of users / items without interactions are zero.
    """
    r = sp.csr_matrix((weight.astype(np.float64), (user, item)), shape=(n_users, n_items))
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    inv_u = np.where(du > 0, 1.0 / np.sqrt(np.where(du > 0, du, 1.0)), 0.0)
    inv_i = np.where(di > 0, 1.0 / np.sqrt(np.where(di > 0, di, 1.0)), 0.0)
    rn = sp.diags(inv_u) @ r @ sp.diags(inv_i)
    k_svds = min(k, min(n_users, n_items) - 1)
    rng = np.random.default_rng(seed)
    if k_svds >= 1 and k_svds < min(n_users, n_items) - 1 and min(n_users, n_items) > 200:
        v0 = rng.uniform(-1, 1, min(n_users, n_items))
        u, s, vt = svds(rn, k=k_svds, v0=v0)
    else:  # small graphs: the dense decomposition, every direction up to k
        u, s, vt = np.linalg.svd(rn.toarray(), full_matrices=False)
        u, s, vt = u[:, :k], s[:k], vt[:k]
    # svds returns ascending singular values and arbitrary signs: fix both for determinism
    order = np.argsort(-s, kind="stable")
    u, s, vt = u[:, order], s[order], vt[order]
    if u.shape[1]:
        sign = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
        sign[sign == 0] = 1
        u, vt = u * sign, vt * sign[:, None]
    return u, s, vt


def spectral_embeddings(
    user: np.ndarray,
    item: np.ndarray,
    weight: np.ndarray,
    n_users: int,
    n_items: int,
    dim: int,
    std: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(E_user [U, d], E_item [I, d])`` float32 (see the module docstring).

    When the graph has fewer than ``d`` usable singular directions, the
    remaining columns are small seeded noise.
    """
    u, s, vt = normalized_svd(user, item, weight, n_users, n_items, dim, seed)
    rng = np.random.default_rng(seed)
    root = np.sqrt(np.clip(s, 0, None))
    eu, ei = u * root, vt.T * root
    scale = std / max(float(np.concatenate([eu, ei]).std()), 1e-12)
    eu, ei = eu * scale, ei * scale
    if eu.shape[1] < dim:
        pad = dim - eu.shape[1]
        eu = np.hstack([eu, rng.normal(0, std * 0.1, (n_users, pad))])
        ei = np.hstack([ei, rng.normal(0, std * 0.1, (n_items, pad))])
    return eu.astype(np.float32), ei.astype(np.float32)
