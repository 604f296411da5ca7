"""The export gate: nothing is published unless ONNX and torch agree (see
:mod:`recsys.export.export` for ``recsys export``).

Checks (each failure names itself; any failure -> GateFailed, exit 1, no bundle):
- ``parity``: onnxruntime's top-K equals torch's (full propagation, seen items
  masked; plus the item-item term from scipy when the model has one) for
  ``parity_users`` sampled users, apart from exact ties, and the top-K scores
  differ by at most ``score_tol``;
- ``foldin``: the fold-in reproduces every training user's trained embedding
  (numpy over all users, and the scorer's own ``user_emb`` for the sample)
  within ``foldin_tol``;
- ``explain``: for ``explain_users`` of the sampled users, the scorer's explanation outputs
  (the two largest history contributions to each recommended item's score, their history
  slots, and what the history adds in all) agree with numpy's float64 contributions
  ``w_ui / sqrt(d_u d_i) * <S_i, final_j> / (K + 1)`` (what the history adds also counts the
  item-item term's positive value) within ``score_tol``;
- ``latency``: p99 of a single-user query through onnxruntime within
  ``latency_p99_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.bundle import FoldInTables
from recsys.item_item import history_csr
from recsys.logs import get_logger
from recsys.reports import Check, GateReport
from recsys.sessions import scorer_session

log = get_logger(__name__)


class ExportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=100, ge=1)
    """Top-K compared between torch and onnxruntime."""
    parity_users: int = Field(default=1000, ge=1)
    """Users sampled for the parity check (all users when there are fewer)."""
    score_tol: float = Field(default=1e-4, gt=0)
    tie_tol: float = Field(default=1e-6, ge=0)
    """Two items whose torch scores differ by at most this are a tie: their order may differ."""
    foldin_tol: float = Field(default=1e-4, gt=0)
    """Largest |fold-in embedding - trained embedding| over all users and dimensions."""
    latency_p99_ms: float = Field(default=20.0, gt=0)
    """Budget of the scorer alone (one user, onnxruntime, 1 thread). Generous by default: on a
    shared CPU the p99 of a sub-millisecond call is scheduler noise; tighten it per deployment."""
    latency_queries: int = Field(default=300, ge=10)
    explain_users: int = Field(default=200, ge=0)
    """Sampled users whose explanations are checked against numpy (0: none)."""
    batch_size: int = Field(default=256, ge=1)
    segment_feature: str | None = "country"
    seed: int = 0


@dataclass
class GateResult:
    metrics: dict[str, float]
    failures: list[str]
    """One line per failure, each starting with its check's name (``parity: ...``)."""

    def report(self, cfg: ExportConfig) -> GateReport:
        """The shared report shape (``report.json``): one check per name of ``CHECKS``, failed
        with its failure lines, else passed with the figures it measured."""
        checks = []
        for name, (rule, keys) in CHECKS.items():
            lines = [f.split(": ", 1)[-1] for f in self.failures if f.startswith(f"{name}:")]
            seen = ", ".join(f"{k} {self.metrics[k]:.4g}" for k in keys if k in self.metrics)
            checks.append(
                Check.of(name, not lines, rule.format(c=cfg), "; ".join(lines) or seen or "n/a")
            )
        known = tuple(f"{name}:" for name in CHECKS)
        checks += [
            Check.of(f.split(":", 1)[0], False, "see the message", f)
            for f in self.failures
            if not f.startswith(known)
        ]
        return GateReport.of("export", checks, details={"metrics": dict(self.metrics)})


CHECKS = {
    "foldin": (
        "fold-in reproduces the trained user embeddings within {c.foldin_tol:g}",
        ("foldin_max_abs_diff", "onnx_foldin_max_abs_diff"),
    ),
    "parity": (
        "onnxruntime's top-{c.k} equals torch's apart from ties, scores within {c.score_tol:g}",
        ("parity_topk_mismatches", "parity_max_score_diff"),
    ),
    "explain": (
        "explanations agree with numpy's contributions within {c.score_tol:g}",
        ("explain_mismatches", "explain_max_abs_diff"),
    ),
    "latency": ("single-user p99 <= {c.latency_p99_ms:g} ms", ("latency_p99_ms",)),
}
"""The export gate's checks: rule (formatted with the config) and the figures they report."""


def _pad_batch(
    t: FoldInTables, indptr: np.ndarray, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = indptr[users + 1] - indptr[users]
    width = max(int(lens.max()) if len(lens) else 0, 1)
    h_idx = np.zeros((len(users), width), dtype=np.int64)
    h_w = np.zeros((len(users), width), dtype=np.float32)
    excl = np.full((len(users), width), len(t.item_ids), dtype=np.int64)
    for r, u in enumerate(users.tolist()):
        a, b = indptr[u], indptr[u + 1]
        h_idx[r, : b - a] = t.hist_item[a:b]
        h_w[r, : b - a] = t.hist_weight[a:b]
        excl[r, : b - a] = t.hist_item[a:b]
    return h_idx, h_w, excl


def foldin_numpy(t: FoldInTables) -> np.ndarray:
    """Every user's embedding by the fold-in formula from the exported tables (float64)."""
    n_users = len(t.user_ids)
    w = t.hist_weight.astype(np.float64)
    d_u = np.bincount(t.hist_user, weights=w, minlength=n_users)
    inv_du = np.where(d_u > 0, 1.0 / np.sqrt(np.maximum(d_u, 1e-300)), 0.0)
    coef = w * inv_du[t.hist_user] * t.item_inv_sqrt_deg.astype(np.float64)[t.hist_item]
    agg = np.zeros((n_users, t.item_S.shape[1]), dtype=np.float64)
    np.add.at(agg, t.hist_user, coef[:, None] * t.item_S[t.hist_item].astype(np.float64))
    out: np.ndarray = (t.user_e0.astype(np.float64) + agg) / (t.num_layers + 1)
    return out


def explanation_diff(
    t: FoldInTables,
    h_idx: np.ndarray,
    h_w: np.ndarray,
    idx: np.ndarray,
    scores: np.ndarray,
    top: np.ndarray,
    contrib: np.ndarray,
    hpos: np.ndarray,
    tol: float,
    term: np.ndarray | None = None,
) -> tuple[float, str]:
    """One user's explanation outputs against numpy: (largest |difference|, what is wrong or
    ''). ``top``/``contrib`` are ``[T, k]``; a slot may differ from numpy's only for a tie
    (its numpy contribution within ``tol`` of the one numpy ranks there)."""
    real = h_w > 0
    rec = np.isfinite(scores)
    if not real.any() or not rec.any():
        return 0.0, ""
    w = h_w.astype(np.float64)
    coef = w / np.sqrt(max(float(w.sum()), 1e-12)) * t.item_inv_sqrt_deg[h_idx]
    c = t.item_S[h_idx].astype(np.float64) @ t.item_final[idx[rec]].astype(np.float64).T
    c *= coef[:, None] / (t.num_layers + 1)
    want_pos = np.where(real[:, None], np.maximum(c, 0.0), 0.0).sum(axis=0)
    if term is not None:  # the item-item term adds to what the history adds, not per slot
        want_pos += np.maximum(term[idx[rec]].astype(np.float64), 0.0)
    c[~real] = -np.inf
    n_top = top.shape[0]
    want = -np.sort(-c, axis=0)[:n_top]
    got = contrib[:, rec].astype(np.float64)
    chosen = np.take_along_axis(c, top[:, rec], axis=0)
    both = np.isfinite(want)
    if not np.array_equal(both, np.isfinite(got)):
        return float("inf"), "a different number of contributing history items"
    diffs = [0.0]
    if both.any():
        diffs += [
            float(np.abs(got[both] - want[both]).max()),
            float(np.abs(chosen[both] - want[both]).max()),
        ]
    diffs.append(float(np.abs(hpos[rec] - want_pos).max()))
    diff = max(diffs)
    if diff > tol:
        return diff, f"max |onnx - numpy contribution| = {diff:.3e} > {tol:g}"
    return diff, ""


def run_gate(t: FoldInTables, ref_users: np.ndarray, cfg: ExportConfig) -> GateResult:
    """Check the scorer built from ``t`` against the torch reference embeddings."""
    from recsys.scorer import build_scorer

    failures: list[str] = []
    metrics: dict[str, float] = {}
    n_users, n_items = len(t.user_ids), len(t.item_ids)
    k = min(cfg.k, n_items)
    scorer = build_scorer(t.item_S, t.item_final, t.item_inv_sqrt_deg, t.num_layers, t.item_item)
    sess = scorer_session(scorer.SerializeToString())
    order = np.argsort(t.hist_user, kind="stable")
    t.hist_user, t.hist_item = t.hist_user[order], t.hist_item[order]
    t.hist_weight, t.hist_types = t.hist_weight[order], t.hist_types[order]
    counts = np.bincount(t.hist_user, minlength=n_users)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    term_of = (
        t.item_item.scorer(history_csr(t.hist_user, t.hist_item, t.hist_weight, n_users, n_items))
        if t.item_item is not None
        else None
    )

    # fold-in reproduces every user's trained embedding
    fold = foldin_numpy(t)
    diff_all = float(np.abs(fold - ref_users).max()) if n_users else 0.0
    metrics["foldin_max_abs_diff"] = diff_all
    if not diff_all <= cfg.foldin_tol:
        worst = int(np.abs(fold - ref_users).max(axis=1).argmax())
        failures.append(
            f"foldin: max |fold-in - trained embedding| = {diff_all:.3e} > {cfg.foldin_tol:g} "
            f"(worst user {t.user_ids[worst]!r}); is the model's adjacency sym-normalised?"
        )

    # parity of top-K between onnxruntime and torch on sampled users
    rng = np.random.default_rng(cfg.seed)
    sample = rng.choice(n_users, size=min(cfg.parity_users, n_users), replace=False)
    # similar history lengths batched together, and at most ~1M padded slots per batch
    sample = sample[np.argsort(counts[sample], kind="stable")]
    item_final64 = t.item_final.astype(np.float64)
    max_score_diff = max_emb_diff = max_expl_diff = 0.0
    mismatched: list[str] = []
    expl_bad: list[str] = []
    explained = 0
    k_arr = np.array([k], dtype=np.int64)
    start = 0
    while start < len(sample):
        longest = max(int(counts[sample[min(start + cfg.batch_size, len(sample)) - 1]]), 1)
        size = max(1, min(cfg.batch_size, (1 << 20) // longest))
        users = sample[start : start + size]
        start += size
        h_idx, h_w, excl = _pad_batch(t, indptr, users)
        scores, idx, emb, top, contrib, hpos = sess.run(
            ["scores", "indices", "user_emb", "because_top", "because_contrib", "history_pos"],
            {
                "e0": t.user_e0[users],
                "hist_idx": h_idx,
                "hist_w": h_w,
                "excl_idx": excl,
                "k": k_arr,
            },
        )
        term = term_of(users) if term_of is not None else None
        for r in range(len(users)):
            if explained >= cfg.explain_users:
                break
            explained += 1
            diff, why = explanation_diff(
                t,
                h_idx[r],
                h_w[r],
                idx[r],
                scores[r],
                top[r],
                contrib[r],
                hpos[r],
                cfg.score_tol,
                term[r] if term is not None else None,
            )
            max_expl_diff = max(max_expl_diff, diff)
            if why:
                expl_bad.append(f"user {t.user_ids[users[r]]!r}: {why}")
        max_emb_diff = max(max_emb_diff, float(np.abs(emb - ref_users[users]).max()))
        ref_scores = ref_users[users].astype(np.float64) @ item_final64.T
        if term is not None:
            ref_scores += term
        for r, u in enumerate(users.tolist()):
            seen = t.hist_item[indptr[u] : indptr[u + 1]]
            ref_scores[r, seen] = -np.inf
        ref_idx = np.argsort(-ref_scores, axis=1, kind="stable")[:, :k]
        ref_top = np.take_along_axis(ref_scores, ref_idx, axis=1)
        finite = np.isfinite(ref_top)
        if not np.array_equal(finite, np.isfinite(scores)):
            mismatched.append("masked item count differs")
        both = finite & np.isfinite(scores)
        if both.any():
            max_score_diff = max(max_score_diff, float(np.abs(scores - ref_top)[both].max()))
        for r in range(len(users)):
            bad = np.flatnonzero((idx[r] != ref_idx[r]) & finite[r])
            if len(bad):
                # a swap is only allowed between items that torch scores as ties
                gap = np.abs(ref_scores[r, idx[r, bad]] - ref_top[r, bad])
                if float(gap.max()) > cfg.tie_tol:
                    mismatched.append(
                        f"user {t.user_ids[users[r]]!r} rank {int(bad[0])}: onnx item "
                        f"{int(idx[r, bad[0]])} vs torch item {int(ref_idx[r, bad[0]])}"
                    )
    metrics.update(
        {
            "parity_users": float(len(sample)),
            "parity_k": float(k),
            "item_item_width": float(t.item_item.width if t.item_item is not None else 0),
            "parity_max_score_diff": max_score_diff,
            "parity_topk_mismatches": float(len(mismatched)),
            "onnx_foldin_max_abs_diff": max_emb_diff,
            "explain_users": float(explained),
            "explain_max_abs_diff": max_expl_diff,
            "explain_mismatches": float(len(expl_bad)),
        }
    )
    if expl_bad:
        failures.append(
            f"explain: the scorer's explanations differ from numpy's contributions for "
            f"{len(expl_bad)} of {explained} users; first: {expl_bad[0]}"
        )
    if mismatched:
        failures.append(
            f"parity: top-{k} differs from torch for {len(mismatched)} of {len(sample)} users "
            f"beyond ties; first: {mismatched[0]}"
        )
    if not max_score_diff <= cfg.score_tol:
        failures.append(
            f"parity: max |onnx - torch score| = {max_score_diff:.3e} > {cfg.score_tol:g}"
        )
    if not max_emb_diff <= cfg.foldin_tol:
        failures.append(
            f"foldin: scorer user_emb differs from trained by {max_emb_diff:.3e} "
            f"> {cfg.foldin_tol:g}"
        )

    # single-user latency through onnxruntime
    lat = []
    users = rng.choice(n_users, size=cfg.latency_queries + 20, replace=True)
    for j, u in enumerate(users.tolist()):
        h_idx, h_w, excl = _pad_batch(t, indptr, np.array([u]))
        t0 = time.perf_counter()
        sess.run(
            None,
            {
                "e0": t.user_e0[u : u + 1],
                "hist_idx": h_idx,
                "hist_w": h_w,
                "excl_idx": excl,
                "k": np.array([min(20, n_items)], dtype=np.int64),
            },
        )
        if j >= 20:  # the first runs warm the allocator and caches
            lat.append(time.perf_counter() - t0)
    p50, p99 = (float(np.percentile(lat, q)) * 1e3 for q in (50, 99))
    metrics.update({"latency_p50_ms": p50, "latency_p99_ms": p99})
    if not p99 <= cfg.latency_p99_ms:
        failures.append(f"latency: single-user p99 {p99:.2f} ms > budget {cfg.latency_p99_ms} ms")
    log.info("export gate: %s; %d failure(s)", metrics, len(failures))
    return GateResult(metrics=metrics, failures=failures)
