"""Prometheus metrics, one registry per app (so tests and multiple apps never collide)."""

from __future__ import annotations

import collections
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Request counts and latency per model, batch sizes, queue depth, load time, provider."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ctscan_predictions",
            "Prediction requests by model, version and HTTP status",
            ["model", "version", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ctscan_prediction_seconds",
            "Prediction latency (upload read to answer)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ctscan_batch_size",
            "Images per session.run",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "ctscan_applicability",
            "Answers by model and applicability verdict (in_domain, outside, not_assessed)",
            ["model", "verdict"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ctscan_queue_depth", "Requests waiting, per stage", ["stage"], registry=self.registry
        )
        self.load_seconds = Gauge(
            "ctscan_model_load_seconds",
            "Time to load and warm a model version",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "ctscan_model_info",
            "Served model versions and their execution provider",
            ["model", "version", "provider"],
            registry=self.registry,
        )

    def count_verdicts(self, model: str, verdicts: Iterable[str]) -> None:
        """Count answers by applicability verdict (one per image or slice)."""
        for verdict, count in collections.Counter(verdicts).items():
            self.verdicts.labels(model, verdict).inc(count)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
