"""Edge weights: per-event type weight x recency decay, summed per pair, then saturated.

The rule is written once, over an *array namespace* (:class:`Ops`): the elementwise
operations it needs (``exp``, ``log1p``, ``where``, ``maximum``, ``clip``, a table
lookup). :data:`NUMPY` runs it on whole numpy columns (the local build, the tests, anyone
auditing a weight, the serving fold-in); :class:`recsys.graph.spark_ops.SparkOps` runs the
very same functions on Spark Columns (the Spark build). No loop over events either way.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from recsys.data.schema import EVENT_TYPES, RATING_MAX, RATING_MIN
from recsys.graph.config import WeightConfig

TYPE_CODE: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
RATING_CODE = TYPE_CODE["rating"]
PURCHASE_CODE = TYPE_CODE["purchase"]
VIEW_CODE = TYPE_CODE["view"]
US_PER_DAY = 86_400_000_000


class Ops(Protocol):
    """The elementwise operations the weight rule is written in (numpy arrays or Spark
    Columns; Python arithmetic operators and ``==`` work on both)."""

    def asfloat(self, x: Any) -> Any: ...
    def asint(self, x: Any) -> Any: ...
    def exp(self, x: Any) -> Any: ...
    def log1p(self, x: Any) -> Any: ...
    def maximum(self, x: Any, floor: float) -> Any: ...
    def clip(self, x: Any, low: float, high: float) -> Any: ...
    def where(self, cond: Any, a: Any, b: Any) -> Any: ...
    def isfinite(self, x: Any) -> Any: ...
    def lookup(self, table: list[float], code: Any) -> Any:
        """``table[code]`` elementwise (``code`` an integer column)."""
        ...


class NumpyOps:
    """:class:`Ops` on numpy arrays."""

    def asfloat(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.float64)

    def asint(self, x: Any) -> Any:
        return np.asarray(x, dtype=np.int64)

    def exp(self, x: Any) -> Any:
        return np.exp(x)

    def log1p(self, x: Any) -> Any:
        return np.log1p(x)

    def maximum(self, x: Any, floor: float) -> Any:
        return np.maximum(x, floor)

    def clip(self, x: Any, low: float, high: float) -> Any:
        return np.clip(x, low, high)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    def isfinite(self, x: Any) -> Any:
        return np.isfinite(x)

    def lookup(self, table: list[float], code: Any) -> Any:
        return np.array(table, dtype=np.float64)[np.asarray(code, dtype=np.int64)]


NUMPY = NumpyOps()


def type_weight_table(cfg: WeightConfig) -> np.ndarray:
    """Weight of each event type, indexed by its code (position in ``EVENT_TYPES``)."""
    return np.array([cfg.type_weights[t] for t in EVENT_TYPES], dtype=np.float64)


def decay(age_days: Any, half_life_days: float, xp: Ops = NUMPY) -> Any:
    """``exp(-ln2 * age / half_life)``; negative ages (clock skew) count as age 0."""
    age = xp.maximum(xp.asfloat(age_days), 0.0)
    return xp.exp(-math.log(2.0) * age / half_life_days)


def event_weights(
    type_code: Any, value: Any, age_days: Any, cfg: WeightConfig, xp: Ops = NUMPY
) -> Any:
    """Raw (unsaturated) contribution of each event, float64.

    ``type_weight[type] * decay(age)``, a rating's type weight scaled by ``stars / 5``
    (stars clipped to the rating range; a missing value counts ``rating_default``)."""
    code, value = xp.asint(type_code), xp.asfloat(value)
    base = xp.lookup([float(w) for w in type_weight_table(cfg)], code)
    stars = xp.clip(xp.where(xp.isfinite(value), value, cfg.rating_default), RATING_MIN, RATING_MAX)
    base = xp.where(code == RATING_CODE, base * (stars / RATING_MAX), base)
    return base * decay(age_days, cfg.half_life_days, xp)


def saturate(raw: Any, cfg: WeightConfig, xp: Ops = NUMPY) -> Any:
    """Frequency saturation of a pair's summed weight; result finite and >= ``min_weight``."""
    raw = xp.asfloat(raw)
    if cfg.saturation == "log1p":
        w = xp.log1p(raw)
    elif cfg.saturation == "hyperbolic":
        w = raw / (raw + cfg.saturation_c)
    else:
        w = raw
    return xp.maximum(w, cfg.min_weight)


def aggregate_pairs(
    user: np.ndarray, item: np.ndarray, raw: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum ``raw`` per (user, item): ``(user, item, summed, order, starts)`` sorted by pair.

    ``order`` sorts the events by pair and ``starts`` are each pair's first
    position in that order, so callers can reduce other columns the same way.
    """
    key = np.asarray(user, dtype=np.int64) * np.int64(n_items) + np.asarray(item, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    if len(sorted_key) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0, np.float64), order, empty.copy()
    starts = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
    summed = np.add.reduceat(np.asarray(raw, dtype=np.float64)[order], starts)
    pair = sorted_key[starts]
    return pair // n_items, pair % n_items, summed, order, starts


def edge_weight(
    types: list[str], values: list[float | None], age_days: list[float], cfg: WeightConfig
) -> float:
    """Weight of one pair from its events (a readable reference for tests and audits)."""
    codes = np.array([TYPE_CODE[t] for t in types], dtype=np.int64)
    vals = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    raw = event_weights(codes, vals, np.array(age_days, dtype=np.float64), cfg).sum()
    return float(saturate(np.array([raw]), cfg)[0])


def pair_types(type_code: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Bitmask of each pair's event types (bit k = EVENT_TYPES[k]); serving and export use it."""
    if len(starts) == 0:
        return np.zeros(0, np.int16)
    bits = (np.int16(1) << type_code.astype(np.int16))[order]
    out: np.ndarray = np.bitwise_or.reduceat(bits, starts).astype(np.int16)
    return out
