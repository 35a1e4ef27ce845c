"""The endpoint's Prometheus metrics, named by Prometheus' conventions (see docs/metrics.md).

One process (``--workers 1``, the default and what a k8s pod runs): the metrics, plus the
standard ``process_*``, ``python_gc_*`` and ``python_info`` collectors, in one registry.

Several uvicorn workers: ``python -m dagster_project.serving --workers N`` sets
``MLOPS_SERVING_METRICS_DIR`` and ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder) before the
workers start, every worker writes
its values there and ``/metrics`` answers the sum over all workers, whichever one is asked
(prometheus_client's multiprocess mode). The per-process collectors do not exist in that
mode (prometheus_client cannot merge them), which docs/metrics.md says.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# Our switch for multiprocess mode, set by ``python -m dagster_project.serving --workers N``
# with prometheus_client's own variables. Not PROMETHEUS_MULTIPROC_DIR itself: importing
# feast.metrics sets that to a temporary folder in every process (and its children) that
# imports Feast, which would turn a single process into a "multiprocess" view of strangers.
MULTIPROC_ENV = "MLOPS_SERVING_METRICS_DIR"
PROMETHEUS_ENV = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")
# From a quarter of a millisecond (a warm /predict takes about 1-3 ms) to ten seconds (a
# 10,000-flight batch), so the histogram resolves the latency it is there to show.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# An online lookup of one flight is a few hundred microseconds against Redis.
LOOKUP_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005,
    0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

# Every name the endpoint exports (what infra/grafana's dashboard may query); the families
# of the standard collectors are listed separately since they exist only in one process.
METRIC_NAMES = (
    "flight_delay_http_requests_total",
    "flight_delay_http_request_duration_seconds",
    "flight_delay_predictions_total",
    "flight_delay_feature_fallbacks_total",
    "flight_delay_feature_store_lookup_duration_seconds",
    "flight_delay_model_reloads_total",
    "flight_delay_model_info",
)
STANDARD_NAMES = (
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "python_gc_collections_total",
    "python_info",
)


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


class Metrics:
    def __init__(self) -> None:
        # The metrics live in their own registry; ``exposition`` is what /metrics renders.
        self.registry = CollectorRegistry()
        folder = multiprocess_dir()
        self.multiprocess = folder is not None
        if folder is not None:
            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposition, path=str(folder))
        else:
            self.exposition = self.registry
            ProcessCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "flight_delay_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flight_delay_http_request_duration_seconds",
            "HTTP request latency, from the request's arrival to the last byte of the response",
            ["method", "path"],
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
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
        self.lookup_latency = Histogram(
            "flight_delay_feature_store_lookup_duration_seconds",
            "Online feature lookups (Feast online store), one per request",
            registry=self.registry,
            buckets=LOOKUP_BUCKETS,
        )
        self.reloads = Counter(
            "flight_delay_model_reloads", "Model reloads", ["result"], registry=self.registry
        )
        # An info metric: constant 1, the facts in the labels. A Gauge rather than an Info
        # because only gauges exist in multiprocess mode ("livemax": 1 while a live worker
        # serves that version, so a rolling reload shows both versions).
        self.model_info = Gauge(
            "flight_delay_model_info",
            "The served model: version, kind and feature service in the labels (value 1)",
            ["version", "kind", "feature_service"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self._model_labels: tuple[str, str, str] | None = None

    def set_model(self, version: str, kind: str, feature_service: str) -> None:
        """The info metric for the model now served (the previous one drops out)."""
        labels = (version, kind, feature_service)
        if self._model_labels == labels:
            return
        if self._model_labels is not None:
            self.model_info.labels(*self._model_labels).set(0)  # what other workers' files see
            self.model_info.remove(*self._model_labels)
        self.model_info.labels(*labels).set(1)
        self._model_labels = labels


def prepare_multiprocess_dir(path: Path) -> None:
    """A folder for the workers' value files, emptied (stale files of an earlier run would be
    summed into this one's counters)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def worker_exited(pid: int) -> None:
    """Drop a finished worker's live gauges (the model info) from the multiprocess view."""
    folder = multiprocess_dir()
    if folder is not None:
        multiprocess.mark_process_dead(pid, str(folder))
