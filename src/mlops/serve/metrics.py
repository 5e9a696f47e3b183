"""`GET /metrics`: the server's Prometheus metrics, in a registry of its own per app.

Low-cardinality labels only: the route template (never the raw path; "other" for unknown
paths), the method, the status code, the predicted label (the model's classes). The model
version is an info metric; inference-log counters are read from the log when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

PREFIX = "mlops"
# Seconds: a lone request is about a millisecond; a full batch or a reload pause, up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's collectors; observe() is called by the access log for every request."""

    def __init__(self, slot: Any, inference_log: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_http_requests_total",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            f"{PREFIX}_rows_scored_total",
            "Rows scored, by predicted label",
            ("label",),
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{PREFIX}_model_reloads_total",
            "New production models swapped in while serving",
            registry=self.registry,
        )
        self.registry.register(_State(slot, inference_log))

    def observe(self, scope: dict, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "other"
        labels = (route, scope.get("method", ""), str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def scored(self, labels: Any) -> None:
        """Count one answer's rows per predicted label."""
        import numpy as np

        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self.rows.labels(str(value)).inc(count)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _State:
    """Read at scrape time: the served model's version and the inference log's counters."""

    def __init__(self, slot: Any, inference_log: Any) -> None:
        self.slot = slot
        self.log = inference_log

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily(f"{PREFIX}_model", "The production model being served")
        info.add_metric([], {"version": self.slot.version or "none"})
        yield info
        if self.log is None:
            return
        for name, text, value in (
            ("written", "Rows written to the inference log", self.log.written),
            (
                "dropped",
                "Rows dropped from the inference log (queue full, write failed)",
                self.log.dropped,
            ),
        ):
            counter = CounterMetricFamily(f"{PREFIX}_inference_log_rows_{name}", text)
            counter.add_metric([], value)
            yield counter
        queued = GaugeMetricFamily(
            f"{PREFIX}_inference_log_rows_queued", "Rows waiting to be written"
        )
        queued.add_metric([], self.log.queued)
        yield queued
