"""Edge weights: per-event type weight x recency decay, summed per pair, then saturated.

Pure numpy over whole columns (no loop over events), so the same function is
used by the build, the tests and anyone auditing a weight.
"""

from __future__ import annotations

import math

import numpy as np

from recsys.data.schema import EVENT_TYPES, RATING_MAX, RATING_MIN
from recsys.graph.config import WeightConfig

TYPE_CODE: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
RATING_CODE = TYPE_CODE["rating"]
PURCHASE_CODE = TYPE_CODE["purchase"]
VIEW_CODE = TYPE_CODE["view"]
US_PER_DAY = 86_400_000_000


def type_weight_table(cfg: WeightConfig) -> np.ndarray:
    """Weight of each event type, indexed by its code (position in ``EVENT_TYPES``)."""
    return np.array([cfg.type_weights[t] for t in EVENT_TYPES], dtype=np.float64)


def decay(age_days: np.ndarray, half_life_days: float) -> np.ndarray:
    """``exp(-ln2 * age / half_life)``; negative ages (clock skew) count as age 0."""
    age = np.maximum(np.asarray(age_days, dtype=np.float64), 0.0)
    out: np.ndarray = np.exp(-math.log(2.0) * age / half_life_days)
    return out


def event_weights(
    type_code: np.ndarray, value: np.ndarray, age_days: np.ndarray, cfg: WeightConfig
) -> np.ndarray:
    """Raw (unsaturated) contribution of each event, float64."""
    base = type_weight_table(cfg)[np.asarray(type_code, dtype=np.int64)]
    is_rating = np.asarray(type_code) == RATING_CODE
    if is_rating.any():
        stars = np.asarray(value, dtype=np.float64)[is_rating]
        stars = np.clip(
            np.where(np.isfinite(stars), stars, cfg.rating_default), RATING_MIN, RATING_MAX
        )
        base[is_rating] *= stars / RATING_MAX
    out: np.ndarray = base * decay(age_days, cfg.half_life_days)
    return out


def saturate(raw: np.ndarray, cfg: WeightConfig) -> np.ndarray:
    """Frequency saturation of a pair's summed weight; result finite and >= ``min_weight``."""
    raw = np.asarray(raw, dtype=np.float64)
    if cfg.saturation == "log1p":
        w = np.log1p(raw)
    elif cfg.saturation == "hyperbolic":
        w = raw / (raw + cfg.saturation_c)
    else:
        w = raw
    out: np.ndarray = np.maximum(w, cfg.min_weight)
    return out


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
