"""Served-recommendation health over a sliding window: what the server has been answering.

Every answer of ``/v1/recommendations`` is recorded in O(1) (amortised): the items it
recommended (exposure counts per catalogue item), where it came from, and its latency.
Everything derived is computed when it is read (``/metrics``, ``GET /v1/ops/health``):

- catalogue coverage: the share of the active bundle's items recommended at least once;
- Gini of exposure: inequality of how often each catalogue item was recommended (0: every
  item equally often; near 1: a few items take every slot), zeros included;
- answers by source, a partition of the answers: ``history`` (the user's history, bundle or
  live, with or without features), ``features`` (a new visitor's features), ``segment``
  (popularity in their segment), ``popularity`` (global popularity), and ``store_fallback``
  (the live store could not be read: served from the bundle alone, whatever the source);
- request latency p50 / p99 (server side, from the route's start to the body), from a
  histogram with bins 2% wide: a quantile is the upper edge of its bin (at most 2% above the
  nearest-rank value of the raw latencies);
- model age: now minus the bundle's data cutoff (the end of the newest data it learned
  from) and now minus when this server started serving it;
- age of the newest live event: now minus the newest event time this server has seen (POSTed
  to it, or read from the live store while serving).

The window is the last ``window_s`` seconds in ``bucket_s`` steps: answers are kept per bucket
and a bucket leaves whole, so the window spans between ``window_s`` and ``window_s + bucket_s``.
Exposure counts belong to the active bundle: a swap starts them again (item indices are the
bundle's own), and answers still finishing on the old bundle count everywhere but there.
Single-threaded by design: everything runs on the event loop.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SOURCES = ("history", "features", "segment", "popularity", "store_fallback")
"""The partition of answers by source (see the module docstring)."""
SOURCE_OF = {
    "history": 0,
    "events": 0,
    "history+features": 0,
    "features": 1,
    "segment_popularity": 2,
    "global_popularity": 3,
}
"""The engine's ``source`` of an answer -> its index in :data:`SOURCES`."""
FALLBACK = SOURCES.index("store_fallback")

LAT_MIN_S = 1e-5
"""Lower edge of the first latency bin (faster answers fall in it)."""
LAT_RATIO = 1.02
"""Each latency bin is 2% wider than the one before (relative resolution of a quantile)."""
LAT_BINS = math.ceil(math.log(100.0 / LAT_MIN_S) / math.log(LAT_RATIO))
"""Up to 100 s; slower answers fall in the last bin."""
_INV_LOG_RATIO = 1.0 / math.log(LAT_RATIO)


def latency_bin(seconds: float) -> int:
    """The histogram bin of a latency: bin ``b`` holds ``(MIN * R**b, MIN * R**(b+1)]``."""
    if seconds <= LAT_MIN_S:
        return 0
    b = math.ceil(math.log(seconds / LAT_MIN_S) * _INV_LOG_RATIO) - 1
    return min(max(b, 0), LAT_BINS - 1)


def bin_upper(b: int) -> float:
    return float(LAT_MIN_S * LAT_RATIO ** (b + 1))


def gini(counts: np.ndarray) -> float | None:
    """Gini coefficient of non-negative counts (every entry, zeros included); None when all
    are zero. Sorted form: ``sum_i (2i - n - 1) x_(i) / (n sum x)``, i = 1..n ascending."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total <= 0:
        return None
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def quantile_from_bins(hist: np.ndarray, q: float) -> float | None:
    """The nearest-rank ``q`` quantile of the histogrammed latencies, as its bin's upper edge."""
    total = int(hist.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    b = int(np.searchsorted(np.cumsum(hist), rank))
    return bin_upper(b)


@dataclass
class _Bucket:
    start: float
    answers: int = 0
    sources: list[int] = field(default_factory=lambda: [0] * len(SOURCES))
    latency: list[int] = field(default_factory=lambda: [0] * LAT_BINS)
    exposure: np.ndarray | None = None

    def reset(self, start: float) -> None:
        self.start = start
        self.answers = 0
        self.sources = [0] * len(SOURCES)
        self.latency = [0] * LAT_BINS
        if self.exposure is not None:
            self.exposure.fill(0)


class ServedHealth:
    """The sliding window of served answers; see the module docstring."""

    def __init__(
        self,
        window_s: float = 300.0,
        bucket_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < bucket_s <= window_s:
            raise ValueError("need 0 < bucket_s <= window_s")
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.clock = clock
        self.wall = wall
        self.buckets: deque[_Bucket] = deque()
        self.engine: object | None = None
        self.n_items = 0
        self.data_cutoff_s: float | None = None
        self.active_since_s: float | None = None
        self.newest_event_us: int | None = None

    # ---------- updates (the hot path: O(1) amortised) ----------

    def activate(self, engine: object, n_items: int, data_cutoff_us: int) -> None:
        """A bundle starts serving: exposure is counted over its catalogue from now on."""
        self.engine = engine
        self.n_items = n_items
        self.data_cutoff_s = data_cutoff_us / 1e6 if data_cutoff_us >= 0 else None
        self.active_since_s = self.wall()
        for b in self.buckets:
            b.exposure = None

    def _current(self) -> _Bucket:
        now = self.clock()
        cur = self.buckets[-1] if self.buckets else None
        if cur is not None and now < cur.start + self.bucket_s:
            return cur
        start = math.floor(now / self.bucket_s) * self.bucket_s
        reuse = self._expire(now)
        if reuse is None:
            reuse = _Bucket(start)
        else:
            reuse.reset(start)
        self.buckets.append(reuse)
        return reuse

    def _expire(self, now: float) -> _Bucket | None:
        """Drop the buckets that left the window; return one of them for reuse."""
        spare = None
        while self.buckets and self.buckets[0].start + self.bucket_s <= now - self.window_s:
            spare = self.buckets.popleft()
        return spare

    def record(
        self, engine: object, source: str, live_state: str, idx: np.ndarray, latency_s: float
    ) -> None:
        """One answer: its engine, ``source``, ``live_state`` and recommended item indices."""
        b = self._current()
        b.answers += 1
        b.sources[FALLBACK if live_state == "unavailable" else SOURCE_OF.get(source, 0)] += 1
        b.latency[latency_bin(latency_s)] += 1
        if engine is self.engine and len(idx):
            if b.exposure is None:
                b.exposure = np.zeros(self.n_items, dtype=np.int64)
            b.exposure[idx] += 1  # the items of one answer are distinct

    def note_event(self, ts_us: int) -> None:
        """A live event this server saw (accepted, or read from the store)."""
        if self.newest_event_us is None or ts_us > self.newest_event_us:
            self.newest_event_us = ts_us

    # ---------- reads (computed here, off the hot path) ----------

    def snapshot(self) -> dict[str, Any]:
        """The window's figures (None where there is nothing to compute them from)."""
        self._expire(self.clock())
        answers = sum(b.answers for b in self.buckets)
        sources = np.zeros(len(SOURCES), dtype=np.int64)
        latency = np.zeros(LAT_BINS, dtype=np.int64)
        exposure = np.zeros(self.n_items, dtype=np.int64)
        for b in self.buckets:
            sources += b.sources
            latency += b.latency
            if b.exposure is not None:
                exposure += b.exposure
        exposed = int(exposure.sum())
        now = self.wall()
        return {
            "window_s": self.window_s,
            "bucket_s": self.bucket_s,
            "answers": answers,
            "catalog_items": self.n_items,
            "items_recommended": int(np.count_nonzero(exposure)),
            "recommendations": exposed,
            "catalog_coverage": (
                float(np.count_nonzero(exposure)) / self.n_items
                if self.n_items and exposed
                else None
            ),
            "exposure_gini": gini(exposure) if exposed else None,
            "source_share": {
                s: (float(sources[j]) / answers if answers else None) for j, s in enumerate(SOURCES)
            },
            "source_answers": {s: int(sources[j]) for j, s in enumerate(SOURCES)},
            "latency_p50_s": quantile_from_bins(latency, 0.50),
            "latency_p99_s": quantile_from_bins(latency, 0.99),
            "model_data_age_s": now - self.data_cutoff_s
            if self.data_cutoff_s is not None
            else None,
            "model_serving_age_s": now - self.active_since_s
            if self.active_since_s is not None
            else None,
            "newest_live_event_age_s": now - self.newest_event_us / 1e6
            if self.newest_event_us is not None
            else None,
        }


class HealthCollector(Collector):
    """The window's figures as Prometheus gauges, computed at each scrape."""

    def __init__(self, health: ServedHealth) -> None:
        self.health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.health.snapshot()
        nan = float("nan")

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=nan if value is None else value)

        yield gauge(
            "recsys_served_window_seconds", "Length of the served-health window", s["window_s"]
        )
        yield gauge(
            "recsys_served_window_answers", "Recommendation answers in the window", s["answers"]
        )
        yield gauge(
            "recsys_served_catalog_coverage",
            "Share of the active bundle's items recommended at least once in the window",
            s["catalog_coverage"],
        )
        yield gauge(
            "recsys_served_exposure_gini",
            "Gini coefficient of how often each catalogue item was recommended in the window",
            s["exposure_gini"],
        )
        share = GaugeMetricFamily(
            "recsys_served_source_share",
            "Share of the window's answers by source (history, "
            "features, segment, popularity, store_fallback: a partition)",
            labels=["source"],
        )
        for src, v in s["source_share"].items():
            share.add_metric([src], nan if v is None else v)
        yield share
        lat = GaugeMetricFamily(
            "recsys_served_latency_seconds",
            "Recommendation latency quantiles over the window "
            "(server side; upper edge of a 2% histogram bin)",
            labels=["quantile"],
        )
        lat.add_metric(["0.5"], nan if s["latency_p50_s"] is None else s["latency_p50_s"])
        lat.add_metric(["0.99"], nan if s["latency_p99_s"] is None else s["latency_p99_s"])
        yield lat
        age = GaugeMetricFamily(
            "recsys_model_age_seconds",
            "Age of the served model: since its data cutoff "
            "(since=data_cutoff) and since this server started serving it (since=active)",
            labels=["since"],
        )
        age.add_metric(
            ["data_cutoff"], nan if s["model_data_age_s"] is None else s["model_data_age_s"]
        )
        age.add_metric(
            ["active"], nan if s["model_serving_age_s"] is None else s["model_serving_age_s"]
        )
        yield age
        yield gauge(
            "recsys_live_newest_event_age_seconds",
            "Age of the newest live event this "
            "server has seen (accepted or read from the live store)",
            s["newest_live_event_age_s"],
        )
