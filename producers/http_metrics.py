"""Prometheus metrics of the HTTP service and `GET /metrics`.

Request and ingest counters live in this process; queue depths, the DLQ by reason and the
delivered/dead-lettered totals are read from Redis (and the broker) per scrape, by the reader
the admin overview uses too (`producers.cluster_state`). The retry schedule's depth is the
workers' metric (`worker.metrics`), exported there only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from eventq.records import DeadLetterReason
from producers.http_routes import Reply, Route
from producers.http_state import ServiceState, state_of

__all__ = ["ClusterSnapshot", "HttpMetrics", "metrics_routes"]

log = logging.getLogger("eventq.http")

_REJECT_REASONS = {
    400: "malformed_json",
    401: "unauthorized",
    403: "forbidden",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}
_INGEST_PREFIX = "/v1/events"


@dataclass
class ClusterSnapshot:
    """Cluster-wide numbers read from Redis at scrape time."""

    queues: dict[str, int] | None
    dead_letters: dict[str, int]
    counters: dict[str, int]


class ClusterCollector(Collector):
    """Exposes the latest ClusterSnapshot (nothing when Redis could not be read)."""

    def __init__(self) -> None:
        self.snapshot: ClusterSnapshot | None = None

    def describe(self) -> list[Any]:
        """Return nothing: the families depend on what Redis holds."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Yield queue and DLQ depths and the delivered/dead-lettered totals."""
        snap = self.snapshot
        if snap is None:
            return
        if snap.queues is not None:
            queues = GaugeMetricFamily(
                "eventq_queue_depth",
                "Messages waiting in each Celery queue (a pack of jobs is one message).",
                labels=["queue"],
            )
            for name, depth in snap.queues.items():
                queues.add_metric([name], depth)
            yield queues
        dlq = GaugeMetricFamily(
            "eventq_dlq_entries", "Dead-letter entries by reason.", labels=["reason"]
        )
        for reason in get_args(DeadLetterReason):
            dlq.add_metric([reason], snap.dead_letters.get(reason, 0))
        yield dlq
        yield CounterMetricFamily(
            "eventq_jobs_delivered",
            "Jobs delivered to HubSpot (all workers).",
            value=snap.counters.get("delivered", 0),
        )
        failed = CounterMetricFamily(
            "eventq_jobs_dead_lettered", "Jobs dead-lettered (all workers).", labels=["reason"]
        )
        for name, value in sorted(snap.counters.items()):
            if name.startswith("dead_lettered:"):
                failed.add_metric([name.partition(":")[2]], value)
        yield failed


@dataclass
class HttpMetrics:
    """The service's own registry: request and ingest counters plus the cluster collector."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    cluster: ClusterCollector = field(default_factory=ClusterCollector)

    def __post_init__(self) -> None:
        reg = self.registry
        self.requests = Counter(
            "eventq_http_requests", "HTTP requests.", ["method", "route", "status"], registry=reg
        )
        self.latency = Histogram(
            "eventq_http_request_seconds",
            "HTTP request latency.",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=reg,
        )
        self.enqueued_events = Counter(
            "eventq_http_events_enqueued", "Events enqueued as new jobs.", ["route"], registry=reg
        )
        self.duplicate_events = Counter(
            "eventq_http_events_duplicate",
            "Events answered with an existing live job.",
            ["route"],
            registry=reg,
        )
        self.rejected_events = Counter(
            "eventq_http_events_rejected",
            "Ingest requests or batch items refused, by reason.",
            ["reason"],
            registry=reg,
        )
        reg.register(self.cluster)

    def enqueued(self, route: str, *, duplicate: bool = False, count: int = 1) -> None:
        """Count events that got a new job (or, with `duplicate`, an existing one)."""
        if count > 0:
            target = self.duplicate_events if duplicate else self.enqueued_events
            target.labels(route).inc(count)

    def rejected(self, reason: str, count: int = 1) -> None:
        """Count refused ingest requests or batch items."""
        if count > 0:
            self.rejected_events.labels(reason).inc(count)

    def observe(self, request: web.Request, route: str, status: int, elapsed_s: float) -> None:
        """Record one finished request."""
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(route).observe(elapsed_s)
        if route.startswith(_INGEST_PREFIX) and status in _REJECT_REASONS:
            self.rejected(_REJECT_REASONS[status])


async def read_snapshot(state: ServiceState) -> ClusterSnapshot:
    """Return the cluster-wide numbers; raises redis.RedisError when Redis is unreachable."""
    cluster = await state.cluster.read()
    return ClusterSnapshot(
        queues=cluster.queues,
        dead_letters=cluster.dead_letters.by_reason,
        counters=cluster.counters,
    )


async def get_metrics(request: web.Request) -> web.Response:
    """Return the Prometheus text exposition (process metrics even when Redis is down)."""
    state = state_of(request)
    try:
        state.metrics.cluster.snapshot = await read_snapshot(state)
    except redis.RedisError:
        log.warning("metrics: Redis unreachable; cluster numbers left out")
        state.metrics.cluster.snapshot = None
    return web.Response(
        body=render(state.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def metrics_routes() -> list[Route]:
    """Return the Prometheus route."""
    text = Reply("Prometheus text exposition", "text/plain")
    return [
        Route(
            "GET",
            "/metrics",
            get_metrics,
            "public",
            "getMetrics",
            "Prometheus metrics: ingest, queue and DLQ depths, delivered/failed",
            "operations",
            {200: text},
        )
    ]
