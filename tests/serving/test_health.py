"""Served-recommendation health: a fixed sequence of answers against values computed by
hand, the sliding window, a bundle swap, the Prometheus gauges; then the same figures from a
real server after a fixed sequence of real requests."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from srv_helpers import API_KEY, make_bundle, start_server, stop_server

from recsys.serving.health import HealthCollector, ServedHealth, latency_bin

WALL0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0  # monotonic seconds (bucket starts are multiples of bucket_s)

    def __call__(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL0 + (self.t - 1000.0)


def _answers(h: ServedHealth, clock: Clock, engine: object) -> None:
    """The fixed sequence: six answers, one second apart, from t = 1000 s."""
    seq = [
        ("history", "ok", [0, 1, 2], 0.001),
        ("history", "ok", [0, 1, 3], 0.002),
        ("features", "ok", [0, 4], 0.004),
        ("global_popularity", "ok", [0, 1], 0.008),
        ("segment_popularity", "unavailable", [0], 0.100),  # store down: the fallback
        ("history+features", "ok", [], 0.003),
    ]
    for source, state, idx, lat in seq:
        h.record(engine, source, state, np.array(idx, dtype=np.int64), lat)
        clock.t += 1.0


def test_fixed_sequence_against_hand_computed_values() -> None:
    clock = Clock()
    h = ServedHealth(window_s=60.0, bucket_s=10.0, clock=clock, wall=clock.wall)
    engine = object()
    h.activate(engine, n_items=8, data_cutoff_us=int((WALL0 - 3600.0) * 1e6))
    _answers(h, clock, engine)
    h.note_event(int((WALL0 - 30.0) * 1e6))
    h.note_event(int((WALL0 - 500.0) * 1e6))  # older: the newest stays
    s = h.snapshot()
    assert s["answers"] == 6 and s["recommendations"] == 11
    # exposure per item: [5, 3, 1, 1, 1, 0, 0, 0]: 5 of 8 items recommended
    assert s["catalog_coverage"] == 5 / 8
    # Gini by hand, ascending x = [0,0,0,1,1,1,3,5], n = 8, sum = 11:
    # sum (2i - n - 1) x_i = -1*1 + 1*1 + 3*1 + 5*3 + 7*5 = 53  ->  53 / (8 * 11)
    assert s["exposure_gini"] == pytest.approx(53 / 88)
    assert s["source_share"] == {
        "history": 3 / 6,
        "features": 1 / 6,
        "segment": 0.0,
        "popularity": 1 / 6,
        "store_fallback": 1 / 6,
    }
    # latencies sorted: 1, 2, 3, 4, 8, 100 ms; nearest rank: p50 = 3rd, p99 = 6th; a bin's
    # upper edge is at most 2% above the value
    assert 0.003 <= s["latency_p50_s"] < 0.003 * 1.02
    assert 0.100 <= s["latency_p99_s"] < 0.100 * 1.02
    assert s["model_data_age_s"] == pytest.approx(3600.0 + 6.0)
    assert s["model_serving_age_s"] == pytest.approx(6.0)
    assert s["newest_live_event_age_s"] == pytest.approx(30.0 + 6.0)

    # the Prometheus view of the same figures
    reg = CollectorRegistry()
    reg.register(HealthCollector(h))
    got = {
        (m.name, tuple(sorted(smp.labels.items()))): smp.value
        for m in text_string_to_metric_families(generate_latest(reg).decode())
        for smp in m.samples
    }
    assert got[("recsys_served_exposure_gini", ())] == pytest.approx(53 / 88)
    assert got[("recsys_served_catalog_coverage", ())] == 5 / 8
    assert got[("recsys_served_source_share", (("source", "store_fallback"),))] == pytest.approx(
        1 / 6
    )
    assert got[("recsys_served_window_answers", ())] == 6
    assert got[("recsys_model_age_seconds", (("since", "data_cutoff"),))] == pytest.approx(3606.0)
    assert 0.1 <= got[("recsys_served_latency_seconds", (("quantile", "0.99"),))] < 0.102


def test_window_slides_and_a_swap_restarts_exposure() -> None:
    clock = Clock()
    h = ServedHealth(window_s=60.0, bucket_s=10.0, clock=clock, wall=clock.wall)
    old = object()
    h.activate(old, n_items=8, data_cutoff_us=-1)
    _answers(h, clock, old)  # all in the bucket [1000, 1010)
    clock.t = 1069.0  # that bucket still overlaps the last 60 s
    assert h.snapshot()["answers"] == 6
    clock.t = 1071.0  # now it has left
    h.record(old, "history", "ok", np.array([7]), 0.002)
    s = h.snapshot()
    assert s["answers"] == 1 and s["catalog_coverage"] == 1 / 8
    assert s["exposure_gini"] == pytest.approx(7 / 8)  # one item of 8 takes every slot
    assert s["model_data_age_s"] is None

    new = object()
    h.activate(new, n_items=3, data_cutoff_us=-1)
    h.record(old, "history", "ok", np.array([5, 6]), 0.002)  # finishing on the old bundle
    h.record(new, "history", "ok", np.array([2]), 0.002)
    s = h.snapshot()
    assert s["answers"] == 3  # every answer counts for sources and latency
    assert s["catalog_items"] == 3 and s["recommendations"] == 1
    assert s["catalog_coverage"] == 1 / 3

    clock.t = 2000.0  # everything has left the window
    s = h.snapshot()
    assert s["answers"] == 0 and s["catalog_coverage"] is None and s["latency_p99_s"] is None
    assert set(s["source_share"].values()) == {None}


def test_latency_bins_are_two_percent_wide() -> None:
    for v in (1e-6, 1e-5, 3.3e-4, 0.0123, 1.0, 99.0):
        b = latency_bin(v)
        upper = 1e-5 * 1.02 ** (b + 1)
        assert v <= upper and (b == 0 or upper < v * 1.02 * (1 + 1e-9))
    assert latency_bin(1e4) == latency_bin(1e5)  # the last bin takes everything slower


def test_a_real_server_after_a_fixed_request_sequence(tmp_path: Path) -> None:
    cutoff = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    bundle = make_bundle(str(tmp_path / "b"), "v1", seed=11, data_cutoff=cutoff.isoformat())
    srv = start_server(tmp_path, "--bundle", bundle)
    event_ts = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120)
    try:
        with srv.client() as c:
            answers = [
                c.get(path, params=params).json()
                for path, params in [
                    ("/v1/recommendations/u1", {"k": 5}),
                    ("/v1/recommendations/u2", {"k": 5}),
                    ("/v1/recommendations/u1", {"k": 5}),
                    ("/v1/recommendations/stranger", {"k": 3, "segment": "FR"}),
                    ("/v1/recommendations/nobody", {"k": 3}),
                    ("/v1/recommendations/newbie", {"k": 4, "f.age": "30", "f.country": "DE"}),
                ]
            ]
            r = c.post(
                "/v1/events",
                headers={"X-API-Key": API_KEY},
                json={
                    "user_id": "fresh",
                    "item_id": "i3",
                    "event_type": "purchase",
                    "ts": event_ts.isoformat(),
                },
            )
            assert r.status_code == 202
            answers.append(c.get("/v1/recommendations/fresh", params={"k": 3}).json())
            assert c.get("/v1/recommendations/u1", params={"k": 0}).status_code == 422
            health = c.get("/v1/ops/health").json()
            metrics = c.get("/metrics").text
    finally:
        stop_server(srv)
    assert [a["source"] for a in answers] == [
        "history",
        "history",
        "history",
        "segment_popularity",
        "global_popularity",
        "features",
        "events",
    ]
    # by hand from the answers: exposure counts, coverage, Gini (mean absolute difference)
    counts = Counter(it["item_id"] for a in answers for it in a["items"])
    n_items = 40
    x = list(counts.values()) + [0] * (n_items - len(counts))
    mad = sum(abs(a - b) for a in x for b in x) / (n_items * n_items)
    assert health["answers"] == 7  # the 422 is not an answer
    assert health["recommendations"] == sum(x)
    assert health["catalog_coverage"] == len(counts) / n_items
    assert health["exposure_gini"] == pytest.approx(mad / (2 * sum(x) / n_items))
    assert health["source_share"] == {
        "history": 4 / 7,
        "features": 1 / 7,
        "segment": 1 / 7,
        "popularity": 1 / 7,
        "store_fallback": 0.0,
    }
    assert 0 < health["latency_p50_s"] <= health["latency_p99_s"] < 5.0
    age = (dt.datetime.now(dt.UTC) - cutoff).total_seconds()
    assert health["model_data_age_s"] == pytest.approx(age, abs=30)
    assert health["newest_live_event_age_s"] == pytest.approx(120, abs=30)
    got = {m.name: m for m in text_string_to_metric_families(metrics)}
    gini = got["recsys_served_exposure_gini"].samples[0].value
    assert math.isclose(gini, health["exposure_gini"], rel_tol=1e-9)
    shares = {s.labels["source"]: s.value for s in got["recsys_served_source_share"].samples}
    assert shares["history"] == pytest.approx(4 / 7)
