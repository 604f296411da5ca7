from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.graph.config import GraphConfig, WeightConfig
from recsys.graph.weights import aggregate_pairs, edge_weight, event_weights, saturate

CFG = WeightConfig()
FUNNEL = ["view", "click", "add_to_cart", "purchase"]
ages = st.floats(min_value=0, max_value=3650, allow_nan=False)
stars = st.floats(min_value=1, max_value=5, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(age=ages, sat=st.sampled_from(["log1p", "hyperbolic", "none"]))
def test_weight_increases_along_the_funnel(age: float, sat: str) -> None:
    cfg = WeightConfig(saturation=sat, half_life_days=30)  # type: ignore[arg-type]
    raw = [edge_weight([t], [None], [age], cfg) for t in FUNNEL]
    unsat = [
        float(event_weights(np.array([i]), np.array([np.nan]), np.array([age]), cfg)[0])
        for i in range(4)
    ]
    assert all(a < b for a, b in itertools.pairwise(unsat))
    # after saturation the order holds (non-strict only where both hit the floor)
    assert all(a <= b for a, b in itertools.pairwise(raw))
    assert all(math.isfinite(w) and w > 0 for w in raw)


@settings(max_examples=60, deadline=None)
@given(a=ages, b=ages, t=st.sampled_from(FUNNEL))
def test_weight_decreases_with_age(a: float, b: float, t: str) -> None:
    young, old = sorted([a, b])
    assert edge_weight([t], [None], [young], CFG) >= edge_weight([t], [None], [old], CFG)
    if old - young > 1e-3 and old < 500:
        assert edge_weight([t], [None], [young], CFG) > edge_weight([t], [None], [old], CFG)


def test_half_life_halves_the_raw_weight() -> None:
    w0 = event_weights(np.array([3]), np.array([np.nan]), np.array([0.0]), CFG)[0]
    w1 = event_weights(np.array([3]), np.array([np.nan]), np.array([CFG.half_life_days]), CFG)[0]
    assert w1 == pytest.approx(w0 / 2)


@settings(max_examples=40, deadline=None)
@given(lo=stars, hi=stars, age=ages)
def test_rating_scales_with_its_value(lo: float, hi: float, age: float) -> None:
    lo, hi = sorted([lo, hi])
    assert edge_weight(["rating"], [lo], [age], CFG) <= edge_weight(["rating"], [hi], [age], CFG)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=50), age=ages)
def test_more_events_more_weight_but_saturating(n: int, age: float) -> None:
    w_n = edge_weight(["click"] * n, [None] * n, [age] * n, CFG)
    w_n1 = edge_weight(["click"] * (n + 1), [None] * (n + 1), [age] * (n + 1), CFG)
    assert w_n <= w_n1
    assert w_n1 <= (n + 1) / n * w_n + 1e-9  # sub-linear: log1p is concave
    assert math.isfinite(w_n) and w_n > 0


def test_saturation_bounds_and_floor() -> None:
    hyper = WeightConfig(saturation="hyperbolic", saturation_c=8.0)
    w = saturate(np.array([0.0, 8.0, 1e300]), hyper)
    assert w[0] == hyper.min_weight and w[1] == pytest.approx(0.5) and w[2] <= 1.0
    # a 100-year-old view decays to ~0 but the edge weight stays > 0
    assert edge_weight(["view"], [None], [36500.0], CFG) == CFG.min_weight


def test_aggregate_pairs_matches_a_naive_sum() -> None:
    rng = np.random.default_rng(3)
    u = rng.integers(0, 7, 500)
    i = rng.integers(0, 5, 500)
    w = rng.random(500)
    eu, ei, s, _, _ = aggregate_pairs(u, i, w, 5)
    expected: dict[tuple[int, int], float] = {}
    for a, b, c in zip(u, i, w, strict=True):
        expected[(int(a), int(b))] = expected.get((int(a), int(b)), 0.0) + float(c)
    got = {(int(a), int(b)): float(c) for a, b, c in zip(eu, ei, s, strict=True)}
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v) for k, v in expected.items())
    keys = eu * 5 + ei
    assert np.all(np.diff(keys) > 0)


def test_config_rejects_a_non_monotone_funnel() -> None:
    with pytest.raises(ValueError, match="must increase"):
        WeightConfig(
            type_weights={"view": 2, "click": 1, "add_to_cart": 4, "purchase": 8, "rating": 8}
        )
    with pytest.raises(ValueError, match="holdout_days"):
        GraphConfig(window_days=3, holdout_days=3)
