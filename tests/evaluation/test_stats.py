"""Paired bootstrap intervals and the power calculation behind the holdout's size."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.evaluation import stats
from recsys.evaluation.metrics import ROWS, ndcg_at_k, ndcg_rows
from recsys.evaluation.stats import POWER_DEFAULTS, Interval, bootstrap_means, users_needed


def bootstrap_mean(x: np.ndarray, **kw: Any) -> Interval:
    return bootstrap_means(np.asarray(x)[None, :], **kw)[0]


def test_intervals_cover_the_true_mean_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    trials = 200
    for t in range(trials):
        x = np.where(rng.random(300) < 0.2, rng.random(300), 0.0)  # true mean 0.1
        iv = bootstrap_mean(x, n_resamples=500, seed=t)
        covered += iv.low <= 0.1 <= iv.high
    assert 0.90 <= covered / trials <= 0.99


def test_interval_width_follows_the_standard_error() -> None:
    x = np.random.default_rng(1).normal(0, 1, 2500)
    iv = bootstrap_mean(x)
    assert iv.half_width == pytest.approx(1.96 * x.std() / 50, rel=0.1)
    assert iv.low < iv.mean < iv.high and iv.n == 2500 and iv.n_resamples == 2000


def test_series_share_the_draws_and_chunking_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(500), rng.random(500)
    joint = bootstrap_means(np.stack([a, b]), seed=3)

    def same(x: stats.Interval, y: stats.Interval) -> bool:  # equal but for BLAS rounding
        return (x.n, x.mean) == (y.n, y.mean) and np.allclose(
            [x.low, x.high], [y.low, y.high], rtol=1e-12, atol=0
        )

    assert same(joint[0], bootstrap_mean(a, seed=3)) and same(joint[1], bootstrap_mean(b, seed=3))
    assert not same(joint[0], bootstrap_mean(a, seed=4))
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 700)  # one resample per chunk
    assert all(
        same(x, y) for x, y in zip(bootstrap_means(np.stack([a, b]), seed=3), joint, strict=True)
    )


def test_pairing_narrows_the_interval_of_a_difference() -> None:
    rng = np.random.default_rng(4)
    base = rng.random(400)
    better = base + 0.02 + rng.normal(0, 0.01, 400)  # strongly correlated with base
    paired = bootstrap_mean(better - base)
    assert paired.low > 0  # the users carry their two values together
    unpaired_width = 1.96 * np.sqrt(better.var() / 400 + base.var() / 400)
    assert paired.half_width < unpaired_width / 5


def test_constant_values_and_bad_inputs() -> None:
    iv = bootstrap_mean(np.full(10, 0.25))
    assert (iv.low, iv.mean, iv.high) == (0.25, 0.25, 0.25)
    with pytest.raises(InputError, match="no users"):
        bootstrap_mean(np.array([]))
    with pytest.raises(InputError, match="finite"):
        bootstrap_mean(np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="n_resamples"):
        bootstrap_mean(np.ones(3), n_resamples=10)
    with pytest.raises(InputError, match="confidence"):
        bootstrap_mean(np.ones(3), confidence=1.0)


def test_power_calculation_and_the_recorded_defaults() -> None:
    # ((1.96 + 0.8416) * 1 / 0.1)^2 = 784.9
    assert users_needed(1.0, 0.1) == 785
    assert users_needed(1.0, 0.1, power=0.9) == 1051  # (1.96 + 1.2816)^2 * 100
    d = POWER_DEFAULTS
    n = users_needed(d["sd_of_ndcg20_difference"], d["effect_ndcg20"], d["alpha"], d["power"])
    from recsys.graph.config import GraphConfig

    # the graph build's default holdout size is the power calculation's answer, rounded
    assert abs(GraphConfig().holdout_min_users - n) <= 0.05 * n
    with pytest.raises(InputError):
        users_needed(0.0, 0.1)


def test_per_user_rows_average_to_the_metrics() -> None:
    rng = np.random.default_rng(5)
    hits = rng.random((50, 20)) < 0.1
    n_rel = np.maximum(hits.sum(axis=1), rng.integers(0, 4, 50))
    rows = ndcg_rows(hits, n_rel, 20)
    assert rows.size == int((n_rel > 0).sum())
    assert float(rows.mean()) == pytest.approx(ndcg_at_k(hits, n_rel, 20))
    assert set(ROWS) == {"recall", "ndcg", "precision", "hit_rate", "map"}
