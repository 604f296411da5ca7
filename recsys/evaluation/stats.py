"""Uncertainty of holdout metrics: paired bootstrap intervals and the holdout's power.

The unit of the model gate's statistics is the **user**: a holdout user's NDCG@20 (or any
averaged metric) is one number per model, the metric is their mean, and two models scored
on the same users are compared through the per-user differences ``d_u = a_u - b_u``.

Paired bootstrap (:func:`bootstrap_means`): draw ``n`` users with replacement from the
``n`` compared users, ``n_resamples`` times (default 2,000) from
``numpy.random.default_rng(seed)`` (default seed 0, so a report is reproducible); each
resample keeps a user's values for both models together (paired), and its statistic is
the mean of ``d_u`` over the drawn users. The interval is the percentile interval of the
resampled means at ``confidence`` (default 95 %: the 2.5th and 97.5th percentiles). The
users are the independent units: several holdout items of one user stay together in
that user's term, so an active user cannot pose as many independent observations.

Power (:func:`users_needed`): a paired comparison whose per-user differences have
standard deviation ``sd`` detects a true mean difference ``effect`` with probability
``power`` at two-sided level ``alpha`` once

    n >= ((z_{1 - alpha/2} + z_{power}) * sd / effect) ** 2

users are compared (the normal approximation, which the bootstrap interval follows for
the holdout sizes it is used at). :data:`POWER_DEFAULTS` records the figures behind the
graph build's default holdout size (README, "your own shop", and benchmarks/RESULTS.md
show where they were measured).

numpy and scipy only (no torch): the gate runs in Airflow workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from recsys.errors import InputError

__all__ = ["POWER_DEFAULTS", "Interval", "bootstrap_means", "users_needed"]

_CHUNK_CELLS = 1 << 22
"""Bounds a resampling chunk's index matrix (resamples x users) to ~32 MiB."""


@dataclass(frozen=True)
class Interval:
    """A mean over users and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    """Users the mean runs over."""
    confidence: float
    n_resamples: int
    seed: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def fmt(self, digits: int = 4) -> str:
        return (
            f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] "
            f"over {self.n} users"
        )


def bootstrap_means(
    values: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Interval]:
    """Percentile bootstrap intervals of the means of several series over the same users.

    ``values`` is ``[series, users]`` (one series: ``x[None, :]``); every series is
    resampled with the same draws of users (the same seed gives the same draws), so the
    intervals of two series describe the same resampled populations. For a paired
    comparison pass the per-user differences ``a - b``: a draw then picks users, each
    carrying both of its values. Each of the ``n_resamples`` draws picks ``users`` users with
    replacement from ``numpy.random.default_rng(seed)``; its mean is ``counts @ values /
    users`` with ``counts`` how often each user was drawn, and the interval holds the central
    ``confidence`` share of the draws' means. A constant series has a zero-width interval;
    no user is an error.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"bootstrap: expected [series, users] values, got shape {x.shape}")
    if x.shape[1] == 0:
        raise InputError("bootstrap: no users to resample")
    if not np.isfinite(x).all():
        raise InputError("bootstrap: per-user values must be finite")
    if n_resamples < 100:
        raise InputError(f"bootstrap: n_resamples must be >= 100, got {n_resamples}")
    if not 0.5 <= confidence < 1:
        raise InputError(f"bootstrap: confidence must be in [0.5, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    n = x.shape[1]
    means = np.empty((n_resamples, x.shape[0]), dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        flat = (idx + (np.arange(size) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float64)
        means[start : start + size] = counts @ x.T / n
    tail = (1 - confidence) / 2
    lows, highs = np.quantile(means, [tail, 1 - tail], axis=0)
    out = []
    for j in range(x.shape[0]):
        mean = float(x[j].mean())
        # the interval of a constant series is that constant: keep float noise out of it
        low, high = min(float(lows[j]), mean), max(float(highs[j]), mean)
        if np.ptp(x[j]) == 0:
            low = high = mean
        out.append(Interval(mean, low, high, n, confidence, n_resamples, seed))
    return out


def users_needed(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users a paired comparison needs to detect a mean difference ``effect`` (see the
    module docstring): ``ceil(((z_{1-alpha/2} + z_power) * sd / effect) ** 2)``."""
    if not (sd > 0 and effect > 0):
        raise InputError(f"users_needed: sd and effect must be > 0, got {sd}, {effect}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise InputError(f"users_needed: alpha and power must be in (0, 1), got {alpha}, {power}")
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return math.ceil((z * sd / effect) ** 2)


POWER_DEFAULTS = {
    "alpha": 0.05,
    "power": 0.8,
    "sd_of_ndcg20_difference": 0.29,
    "effect_ndcg20": 0.04,
}
"""The power calculation behind the default holdout size (``GraphConfig.holdout_min_users``).

- ``sd_of_ndcg20_difference``: the standard deviation of the per-user NDCG@20 difference
  between two models on the same holdout users, where a user has one or two holdout
  products: 0.29 for the GNN against popularity on the generated 10^5-purchase shop
  (tests/dags/purchase_log.py; 438 holdout users; 0.27 on its one-day holdout), 0.26 to
  0.33 between two models of equal quality on 40 low-volume planted shops
  (tests/evaluation/planted_shop.py). ``benchmarks/model_gate.py`` measures them
  (benchmarks/RESULTS.md, "Model gate").
- ``effect_ndcg20``: the smallest difference worth telling apart, 0.04: about 30 % of
  popularity's NDCG@20 on the generated shop (0.14).

``users_needed(0.29, 0.04)`` = 413 users; the default is 400 (79 % power instead of 80 %).
A one-day holdout of 32 users, the shop of the issue, gives an interval of about +-0.10
around a difference whose baselines are 0.02 to 0.03: a coin toss.
"""
