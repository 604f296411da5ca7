"""Baselines in the same harness as the GNN: popularity, EASE, GF-CF, a polynomial filter.

Each baseline follows :class:`Recommender`: ``fit`` on a user x item CSR
matrix of train interactions (binary or weighted), then ``score(users)``
returns float32 ``[len(users), n_items]`` scores for
:func:`recsys.evaluation.ranking.topk_full_ranking` (which masks train items).

Graph filters (Shen et al. 2021, "How Powerful is Graph Convolution for
Recommendation?", and the BSPM / ChebyCF line after it) work on the
normalised interaction matrix ``R~ = D_U^-1/2 R D_I^-1/2`` and its item-item
gram ``P~ = R~^T R~``. ``P~`` is never formed: ``x P~ = (x R~^T) R~`` costs two
sparse products per batch, whereas a dense 41k x 41k ``P~`` would need 6.7 GB.

numpy/scipy only: no torch import, so these run wherever the evaluator runs.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recsys.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["EASE", "GFCF", "PolyFilter", "Popularity", "Recommender", "normalized_interactions"]


@runtime_checkable
class Recommender(Protocol):
    """A model that ranks items for users; the harness masks train items itself."""

    name: str

    def fit(self, train: sp.csr_matrix) -> None: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...


def _as_train(train: sp.spmatrix) -> sp.csr_matrix:
    if not sp.issparse(train):
        raise InputError("train must be a scipy sparse user x item matrix")
    m = sp.csr_matrix(train, dtype=np.float32)
    if m.nnz == 0:
        raise InputError("train has no interactions")
    if (m.data < 0).any() or not np.isfinite(m.data).all():
        raise InputError("train weights must be finite and non-negative")
    return m


def _users(users: np.ndarray, n_users: int) -> np.ndarray:
    users = np.asarray(users)
    if users.ndim != 1 or not np.issubdtype(users.dtype, np.integer):
        raise InputError(f"users must be a 1-d integer array, got {users.dtype} {users.shape}")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise InputError(f"user ids must be in 0..{n_users - 1}")
    return users


def _inv_sqrt(deg: np.ndarray) -> np.ndarray:
    out = np.zeros_like(deg, dtype=np.float64)
    nz = deg > 0
    out[nz] = deg[nz] ** -0.5
    return out


def normalized_interactions(train: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(R~, d_I)``: ``D_U^-1/2 R D_I^-1/2`` (float32 CSR) and the item degrees.

    Rows or columns without interactions stay zero rather than dividing by zero.
    """
    r = _as_train(train)
    d_u = np.asarray(r.sum(axis=1)).ravel()
    d_i = np.asarray(r.sum(axis=0)).ravel()
    norm = sp.diags(_inv_sqrt(d_u)) @ r @ sp.diags(_inv_sqrt(d_i))
    return sp.csr_matrix(norm, dtype=np.float32), d_i


class Popularity:
    """Scores each item by its total train weight (interaction count when binary)."""

    name = "popularity"

    def __init__(self) -> None:
        self._pop: np.ndarray | None = None
        self._n_users = 0

    def fit(self, train: sp.csr_matrix) -> None:
        r = _as_train(train)
        self._n_users = r.shape[0]
        self._pop = np.asarray(r.sum(axis=0), dtype=np.float32).ravel()

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._pop is None:
            raise RuntimeError("Popularity.score called before fit")
        users = _users(users, self._n_users)
        return np.tile(self._pop, (users.size, 1))


class EASE:
    """EASE (Steck 2019): closed-form item-item ridge regression with a zero diagonal.

    ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + l2 I)^-1``. The dense
    item x item inverse costs ``n_items^2`` memory and ``n_items^3`` time, so
    ``fit`` refuses catalogues above ``max_items`` (41k Gowalla items would
    need ~7 GB per matrix and tens of minutes on 2 cores).
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        if l2 <= 0:
            raise InputError(f"EASE l2 must be > 0, got {l2}")
        self.l2 = l2
        self.max_items = max_items
        self._train: sp.csr_matrix | None = None
        self._b: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        r = _as_train(train)
        n = r.shape[1]
        if n > self.max_items:
            gb = 3 * n * n * 8 / 1e9
            raise InputError(
                f"EASE: {n} items exceed max_items={self.max_items} "
                f"(a dense {n}x{n} inverse needs ~{gb:.1f} GB); use GFCF or raise max_items"
            )
        g = (r.T @ r).toarray().astype(np.float64)
        g[np.diag_indices(n)] += self.l2
        p = np.linalg.inv(g)
        b = -p / np.diag(p)
        b[np.diag_indices(n)] = 0.0
        self._train = r
        self._b = b.astype(np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._train is None or self._b is None:
            raise RuntimeError("EASE.score called before fit")
        users = _users(users, self._train.shape[0])
        out: np.ndarray = np.asarray(self._train[users] @ self._b, dtype=np.float32)
        return out


class GFCF:
    """GF-CF (Shen et al. 2021): linear filter plus an ideal low-pass filter.

    ``s_u = r_u P~ + alpha * r_u D_I^-1/2 V_k^T V_k D_I^1/2`` where ``V_k`` holds
    the top-``k`` right singular vectors of ``R~``. Defaults are the paper's
    Gowalla / Yelp2018 setting (k=256, alpha=0.3), as in its reference code
    (yshenaw/GF_CF ``GF_CF.getUsersRating``). ``alpha=0`` gives the linear
    filter alone (the paper's choice for Amazon-book).
    """

    name = "gf-cf"

    def __init__(self, k: int = 256, alpha: float = 0.3, seed: int = 0) -> None:
        if k < 0:
            raise InputError(f"GFCF k must be >= 0, got {k}")
        self.k = k
        self.alpha = alpha
        self.seed = seed
        self._train: sp.csr_matrix | None = None
        self._norm: sp.csr_matrix | None = None
        self._norm_t: sp.csr_matrix | None = None
        self._left: np.ndarray | None = None  # [n_items, k] = D_I^-1/2 V_k^T
        self._right: np.ndarray | None = None  # [k, n_items] = V_k D_I^1/2
        self._d_i: np.ndarray | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        r = _as_train(train)
        norm, d_i = normalized_interactions(r)
        self._train = r
        self._norm = norm
        self._norm_t = sp.csr_matrix(norm.T)
        self._d_i = d_i
        if self.alpha != 0 and self.k > 0:
            vt = top_right_singular_vectors(norm, self.k, self.seed)
            # an item without train interactions has a zero column in R~, so its
            # singular-vector entries are zero and the D_I^1/2 factor (0) is harmless
            self._left = (vt * _inv_sqrt(d_i)[None, :]).T.astype(np.float32)
            self._right = (vt * np.sqrt(d_i)[None, :]).astype(np.float32)

    def _linear(self, r: sp.csr_matrix) -> np.ndarray:
        assert self._norm is not None and self._norm_t is not None
        # r is sparse, so (r R~^T) R~ stays a sparse-sparse product: far cheaper than dense
        out: np.ndarray = ((r @ self._norm_t) @ self._norm).toarray()
        return out

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._train is None:
            raise RuntimeError("GFCF.score called before fit")
        users = _users(users, self._train.shape[0])
        r = self._train[users]
        s = self._linear(r)
        if self._left is not None and self._right is not None:
            s += self.alpha * np.asarray((r @ self._left) @ self._right)
        return s.astype(np.float32, copy=False)


class PolyFilter(GFCF):
    """A training-free polynomial graph filter in the GF-CF / BSPM family.

    ``s_u = sum_j c_j r_u P~^j + alpha * sum_j d_j ideal(r_u) P~^j`` with
    ``ideal`` the GF-CF low-pass term ``r_u D_I^-1/2 V_k^T V_k D_I^1/2``.
    ``coefs=(0, 1), ideal_coefs=(1,)`` is GF-CF. BSPM-EM (Choi et al. 2023)
    with one Euler step of blurring (T_b=1) and of sharpening (T_s), the
    ideal term added before sharpening and again after, expands to
    ``coefs=(0, 1, -T_s), ideal_coefs=(2, -T_s)`` with ``alpha = idl_beta``.
    Each power of ``P~`` applied to dense ``[B, n_items]`` scores costs two
    sparse products, so the cost grows linearly with the degree.

    ``degree_exponent`` (gamma) rescales the final scores by ``d_i^gamma``
    (item train degree, at least 1): a popularity correction that the
    normalisation fixes at 0 in GF-CF and that ChebyCF also tunes.

    ``input_exponent`` (beta) reweights the user's history by ``d_i^beta``
    before filtering (ChebyCF's pre-normalisation); 0 leaves it binary.

    The defaults were chosen on a validation split carved from Gowalla's train
    set (``benchmarks/baselines_gowalla.py --split valid --models tune``), never
    on test; other datasets should re-run that search.
    """

    name = "poly-filter"

    def __init__(
        self,
        coefs: tuple[float, ...] = (0.0, 1.0, -0.6),
        k: int = 448,
        alpha: float = 0.1,
        ideal_coefs: tuple[float, ...] = (1.0, -2.0),
        degree_exponent: float = 0.2,
        input_exponent: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(k=k, alpha=alpha, seed=seed)
        if not coefs or not ideal_coefs:
            raise InputError("PolyFilter needs at least one coefficient in coefs and ideal_coefs")
        self.coefs = tuple(float(c) for c in coefs)
        self.ideal_coefs = tuple(float(c) for c in ideal_coefs)
        self.degree_exponent = degree_exponent
        self.input_exponent = input_exponent

    def _filter_input(self, r: sp.csr_matrix) -> sp.csr_matrix:
        assert self._d_i is not None
        if self.input_exponent != 0:
            scale = np.maximum(self._d_i, 1.0) ** self.input_exponent
            r = sp.csr_matrix(r @ sp.diags(scale.astype(np.float32)))
        return r

    def _apply_p(self, x: np.ndarray) -> np.ndarray:
        assert self._norm is not None and self._norm_t is not None
        # x P~ = (x R~^T) R~, computed as (R~^T (R~ x^T))^T: scipy runs sparse @ dense in C
        y = self._norm @ x.T
        out: np.ndarray = np.ascontiguousarray((self._norm_t @ y).T)
        return out

    def _poly(self, x0: np.ndarray, x1: np.ndarray, coefs: tuple[float, ...]) -> np.ndarray:
        """``sum_j coefs[j] x0 P~^j`` given ``x1 = x0 P~``."""
        s = coefs[0] * x0 if coefs[0] != 0 else np.zeros_like(x1)
        power = x1
        for j, c in enumerate(coefs[1:], start=1):
            if j > 1:
                power = self._apply_p(power)
            if c != 0:
                s += c * power
        return s

    def score(self, users: np.ndarray) -> np.ndarray:
        if self._train is None:
            raise RuntimeError("PolyFilter.score called before fit")
        return self.score_history(self._train[_users(users, self._train.shape[0])])

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        """Scores ``[B, n_items]`` of any histories ``[B, n_items]`` (weights as in training).

        The filter is linear in the history, so row ``i`` of ``score_history`` of the
        identity is the item-item operator's row ``i``: what a server would need to compute
        the score exactly from a history it has not seen at fit time.
        """
        if self._train is None:
            raise RuntimeError("PolyFilter.score_history called before fit")
        r = self._filter_input(sp.csr_matrix(history, dtype=np.float32))
        s = self._poly(r.toarray(), self._linear(r).astype(np.float32), self.coefs)
        if self._left is not None and self._right is not None:
            ideal = np.asarray((r @ self._left) @ self._right, dtype=np.float32)
            ideal_p = self._apply_p(ideal) if len(self.ideal_coefs) > 1 else ideal
            s += self.alpha * self._poly(ideal, ideal_p, self.ideal_coefs)
        if self.degree_exponent != 0 and self._d_i is not None:
            s *= (np.maximum(self._d_i, 1.0) ** self.degree_exponent).astype(np.float32)
        return s.astype(np.float32, copy=False)


def top_right_singular_vectors(m: sp.csr_matrix, k: int, seed: int = 0) -> np.ndarray:
    """``V_k^T`` as ``[k, n_cols]`` (float64): the top-``k`` right singular vectors of ``m``.

    Rows are ordered by decreasing singular value, so ``vt[:j]`` is the top-``j`` basis.
    """
    k = min(k, min(m.shape) - 1)
    if k < 1:
        raise InputError(f"matrix {m.shape} too small for a low-rank filter")
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(min(m.shape))
    # ARPACK is deterministic given v0; the largest singular triplets are what the filter keeps
    _, s, vt = svds(m.astype(np.float64), k=k, v0=v0, which="LM")
    return np.asarray(vt)[np.argsort(-s, kind="stable")]
