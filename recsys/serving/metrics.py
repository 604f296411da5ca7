"""The server's Prometheus metrics (one registry per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "recsys_request_latency_seconds",
            "Server-side request latency",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.requests = Counter(
            "recsys_requests_total",
            "Requests by endpoint and outcome",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.sources = Counter(
            "recsys_recommendations_total",
            "Recommendations by source (history, features, "
            "segment_popularity, global_popularity, events)",
            ["source"],
            registry=r,
        )
        self.model_info = Gauge(
            "recsys_model_info", "The active bundle (value 1)", ["version", "uri"], registry=r
        )
        self.foldins = Counter(
            "recsys_foldins_total", "Events folded into a user history", registry=r
        )
        self.events = Counter(
            "recsys_events_total", "Events received by outcome", ["outcome"], registry=r
        )
        self.coverage = Gauge(
            "recsys_served_item_coverage",
            "Share of the catalogue recommended at least once since the active bundle was loaded",
            registry=r,
        )
        self.reloads = Counter(
            "recsys_bundle_reloads_total", "Bundle loads by outcome", ["outcome"], registry=r
        )
        self.store_write = Histogram(
            "recsys_live_store_write_seconds",
            "Storing an event batch in the live store "
            "(memory: append + fsync of the local log; redis: MULTI/EXEC)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0),
            registry=r,
        )
        self.live_reads = Counter(
            "recsys_live_reads_total",
            "Live-history reads by outcome (ok; unavailable: served from the bundle alone)",
            ["outcome"],
            registry=r,
        )
        self.store_up = Gauge(
            "recsys_live_store_up",
            "1 when the last live-store check succeeded",
            ["backend"],
            registry=r,
        )
