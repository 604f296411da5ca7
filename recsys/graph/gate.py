"""The graph gate: checks a built graph before it is published.

Checks: node and edge counts above minimums, no duplicate edges, weights
finite and > 0, share of isolated nodes, degree-distribution drift and
event-type-mix drift against the previous snapshot. The result is the shared
:class:`~recsys.reports.GateReport` (each failure names the check and the observed
value); the build writes it as the graph report's ``report.json`` whatever the outcome,
and :func:`enforce` raises :class:`GateFailed`, so the build then publishes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.data.schema import EVENT_TYPES
from recsys.errors import GateFailed
from recsys.graph.config import GateConfig
from recsys.reports import Check, GateReport

N_DEGREE_BINS = 32


@dataclass(frozen=True)
class GraphStats:
    """What the next snapshot's drift checks compare against (saved in ``stats.json``)."""

    n_users: int
    n_items: int
    n_edges: int
    active_users: int
    active_items: int
    user_degree_hist: list[float]
    item_degree_hist: list[float]
    type_mix: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphStats:
        return cls(
            n_users=int(d["n_users"]),
            n_items=int(d["n_items"]),
            n_edges=int(d["n_edges"]),
            active_users=int(d.get("active_users", d["n_users"])),
            active_items=int(d.get("active_items", d["n_items"])),
            user_degree_hist=[float(x) for x in d["user_degree_hist"]],
            item_degree_hist=[float(x) for x in d["item_degree_hist"]],
            type_mix={str(k): float(v) for k, v in d["type_mix"].items()},
        )


def degree_histogram(degree: np.ndarray) -> list[float]:
    """Shape of the degree distribution: shares of nodes (degree >= 1) in octave bins of
    ``degree / mean degree`` (bin 16 holds [1, 2) times the mean).

    Relative to the mean so that a window that is still filling up (every degree
    grows) is not drift; a change of shape (a few nodes taking all the edges, a
    bot inflating one user) is.
    """
    d = np.asarray(degree, dtype=np.float64)
    d = d[d > 0]
    if len(d) == 0:
        return [0.0] * N_DEGREE_BINS
    rel = np.log2(d / d.mean())
    bins = np.clip(np.floor(rel).astype(np.int64) + N_DEGREE_BINS // 2, 0, N_DEGREE_BINS - 1)
    counts = np.bincount(bins, minlength=N_DEGREE_BINS)
    return [round(float(x), 12) for x in counts / counts.sum()]


def type_mix(type_counts: np.ndarray) -> dict[str, float]:
    total = float(np.sum(type_counts))
    return {
        t: (round(float(type_counts[i]) / total, 12) if total else 0.0)
        for i, t in enumerate(EVENT_TYPES)
    }


def tv_distance(p: list[float] | np.ndarray, q: list[float] | np.ndarray) -> float:
    """Total-variation distance between two distributions (0 = same, 1 = disjoint)."""
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    return float(0.5 * np.abs(a - b).sum())


def previous_active(stats: GraphStats, kind: str) -> int:
    return stats.active_users if kind == "user" else stats.active_items


def compute_stats(
    user: np.ndarray, item: np.ndarray, n_users: int, n_items: int, type_counts: np.ndarray
) -> GraphStats:
    user_deg = np.bincount(user, minlength=n_users)
    item_deg = np.bincount(item, minlength=n_items)
    return GraphStats(
        n_users=n_users,
        n_items=n_items,
        n_edges=len(user),
        active_users=int((user_deg > 0).sum()),
        active_items=int((item_deg > 0).sum()),
        user_degree_hist=degree_histogram(user_deg),
        item_degree_hist=degree_histogram(item_deg),
        type_mix=type_mix(type_counts),
    )


_OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b}


def _check(name: str, observed: float, op: str, threshold: float) -> Check:
    return Check.of(
        name,
        bool(_OPS[op](observed, threshold)),
        f"{op} {threshold:.6g}",
        f"{observed:.6g}",
        value=float(observed),
        threshold=float(threshold),
    )


def check_graph(
    user: np.ndarray,
    item: np.ndarray,
    weight: np.ndarray,
    n_users: int,
    n_items: int,
    type_counts: np.ndarray,
    previous: GraphStats | None,
    cfg: GateConfig,
) -> tuple[GateReport, GraphStats]:
    """Run every check; returns the report and this graph's stats (the next drift baseline)."""
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    weight = np.asarray(weight)
    stats = compute_stats(user, item, n_users, n_items, type_counts)
    user_deg = np.bincount(user, minlength=n_users)
    item_deg = np.bincount(item, minlength=n_items)
    active_users = int((user_deg > 0).sum())
    active_items = int((item_deg > 0).sum())
    key = user * np.int64(max(n_items, 1)) + item
    if len(key) and not bool((key[1:] > key[:-1]).all()):
        key = np.sort(key)  # the build emits sorted edges, so this sort is rarely needed
    duplicates = int((key[1:] == key[:-1]).sum()) if len(key) else 0
    bad_weights = int((~np.isfinite(weight) | ~(weight > 0)).sum())
    iso_users = 1.0 - active_users / n_users if n_users else 0.0
    iso_items = 1.0 - active_items / n_items if n_items else 0.0

    checks = [
        _check("min_users", active_users, ">=", cfg.min_users),
        _check("min_items", active_items, ">=", cfg.min_items),
        _check("min_edges", len(user), ">=", cfg.min_edges),
        _check("duplicate_edges", duplicates, "==", 0),
        _check("weights_finite_positive", bad_weights, "==", 0),
        _check("isolated_user_share", iso_users, "<=", cfg.max_isolated_user_share),
        _check("isolated_item_share", iso_items, "<=", cfg.max_isolated_item_share),
    ]
    if previous is not None:
        # on a handful of nodes a histogram distance is noise, so drift needs enough of them
        if min(active_users, previous_active(previous, "user")) >= cfg.drift_min_nodes:
            du = tv_distance(stats.user_degree_hist, previous.user_degree_hist)
            checks.append(_check("user_degree_drift", du, "<=", cfg.max_degree_drift))
        if min(active_items, previous_active(previous, "item")) >= cfg.drift_min_nodes:
            di = tv_distance(stats.item_degree_hist, previous.item_degree_hist)
            checks.append(_check("item_degree_drift", di, "<=", cfg.max_degree_drift))
        mix_now = [stats.type_mix.get(t, 0.0) for t in EVENT_TYPES]
        mix_prev = [previous.type_mix.get(t, 0.0) for t in EVENT_TYPES]
        dm = tv_distance(mix_now, mix_prev)
        checks.append(_check("type_mix_drift", dm, "<=", cfg.max_type_mix_drift))
    r = GateReport.of("graph", checks)
    return r, stats


def enforce(report: GateReport, where: str, report_uri: str | None = None) -> None:
    """Raise :class:`GateFailed` naming each failed check and its observed value."""
    if not report.passed:
        raise GateFailed("graph", [f"{where}: {c.line()}" for c in report.failed], report_uri)
