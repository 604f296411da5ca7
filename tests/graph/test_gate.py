from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from recsys.errors import GateFailed
from recsys.graph.build import build_snapshot
from recsys.graph.config import GateConfig
from recsys.graph.gate import GraphStats, check_graph, compute_stats, enforce
from recsys.graph.snapshot import snapshot_uri

from .conftest import END, random_events, small_config, write_events

N_U, N_I = 400, 300
LOOSE = GateConfig(min_users=1, min_items=1, min_edges=1, drift_min_nodes=0)


def _graph(seed: int = 0, n_edges: int = 4000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, N_U * N_I, n_edges * 2))[:n_edges]
    u, i = key // N_I, key % N_I
    # every node gets at least one edge
    u = np.concatenate([u, np.arange(N_U), np.zeros(N_I, np.int64)])
    i = np.concatenate([i, np.zeros(N_U, np.int64), np.arange(N_I)])
    key = np.unique(u * N_I + i)
    return key // N_I, key % N_I, np.ones(len(key), np.float32)


MIX = np.array([60, 20, 10, 8, 2])


def _failed(report: object) -> set[str]:
    from recsys.graph.gate import GateReport

    assert isinstance(report, GateReport)
    return {c.name for c in report.failed}


def _run(
    u: np.ndarray,
    i: np.ndarray,
    w: np.ndarray,
    cfg: GateConfig = LOOSE,
    prev: GraphStats | None = None,
    mix: np.ndarray = MIX,
) -> set[str]:
    report, _ = check_graph(u, i, w, N_U, N_I, mix, prev, cfg)
    return _failed(report)


def test_a_healthy_graph_passes_against_itself() -> None:
    u, i, _w = _graph()
    prev = compute_stats(u, i, N_U, N_I, MIX)
    assert _run(*_graph(seed=1), prev=prev) == set()


@pytest.mark.parametrize(
    ("field", "check"),
    [("min_users", "min_users"), ("min_items", "min_items"), ("min_edges", "min_edges")],
)
def test_minimum_counts(field: str, check: str) -> None:
    cfg = LOOSE.model_copy(update={field: 10**6})
    assert _run(*_graph(), cfg=cfg) == {check}


def test_duplicate_edges() -> None:
    u, i, w = _graph()
    failed = _run(np.append(u, u[5]), np.append(i, i[5]), np.append(w, w[5]))
    assert failed == {"duplicate_edges"}


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -1.0])
def test_weights_finite_positive(bad: float) -> None:
    u, i, w = _graph()
    w[3] = bad
    assert _run(u, i, w) == {"weights_finite_positive"}


def test_isolated_share() -> None:
    u, i, w = _graph()
    keep = (u < N_U // 4) & (i < N_I // 20)  # most users and items lose every edge
    assert _run(u[keep], i[keep], w[keep]) >= {"isolated_user_share", "isolated_item_share"}


def test_degree_drift() -> None:
    u, i, _w = _graph()
    prev = compute_stats(u, i, N_U, N_I, MIX)
    # one user takes a huge share of the edges: the degree shape changes
    extra_i = np.arange(N_I)
    hub_u = np.concatenate([u[u != 0], np.zeros(N_I, np.int64)])
    hub_i = np.concatenate([i[u != 0], extra_i])
    # and most users collapse to a single edge
    first = np.concatenate(([True], hub_u[1:] != hub_u[:-1]))
    sel = first | (hub_u == 0)
    failed = _run(hub_u[sel], hub_i[sel], np.ones(sel.sum(), np.float32), prev=prev)
    assert "user_degree_drift" in failed


def test_type_mix_drift() -> None:
    u, i, w = _graph()
    prev = compute_stats(u, i, N_U, N_I, MIX)
    assert _run(u, i, w, prev=prev, mix=np.array([0, 0, 0, 100, 0])) == {"type_mix_drift"}


def test_failure_message_names_check_and_value() -> None:
    u, i, w = _graph()
    report, _ = check_graph(
        u, i, w, N_U, N_I, MIX, None, LOOSE.model_copy(update={"min_edges": 10**6})
    )
    with pytest.raises(GateFailed) as exc:
        enforce(report, "snap")
    assert exc.value.failures == [f"snap: min_edges: >= 1e+06 (observed {len(u)})"]
    assert exc.value.exit_code == 1


def test_build_gate_failure_publishes_nothing(lake: str) -> None:
    write_events(lake, random_events(40, 30, 3, 100))
    with pytest.raises(GateFailed, match="min_edges"):
        build_snapshot(lake, END, small_config(gate={"min_edges": 10**6}))
    graphs = Path(lake, "graphs")
    assert not Path(snapshot_uri(lake, END)).exists()
    assert not graphs.exists() or list(graphs.iterdir()) == []


def test_build_type_mix_drift_against_previous_snapshot(lake: str) -> None:
    write_events(lake, random_events(40, 30, 3, 200, types=("view", "click")))
    build_snapshot(lake, END, small_config(window_days=3))
    later = END + dt.timedelta(days=3)
    write_events(lake, random_events(40, 30, 3, 200, end=later, types=("purchase",)), prefix="p")
    with pytest.raises(GateFailed, match=r"type_mix_drift: <= 0.2 \(observed 1\)"):
        build_snapshot(lake, later, small_config(window_days=3))
    assert not Path(snapshot_uri(lake, later)).exists()
