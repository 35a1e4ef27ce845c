"""The endpoint's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "flight_delay_http_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flight_delay_http_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.predictions = Counter(
            "flight_delay_predictions",
            "Predictions by model version and decision",
            ["model_version", "delayed"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "flight_delay_feature_fallbacks",
            "Predictions that used imputed values for unknown entities",
            registry=self.registry,
        )
        self.reloads = Counter(
            "flight_delay_model_reloads", "Model reloads", ["result"], registry=self.registry
        )
        self.version = Gauge(
            "flight_delay_model_version", "Version of the served model", registry=self.registry
        )
