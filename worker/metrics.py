"""Prometheus metrics of a worker, served on `EVENTQ_METRICS_PORT` at `/metrics`.

A lone `celery worker` serves its own; `eventq worker --processes N` serves its N processes'
metrics added up, on the one port (`serve_process_metrics`).

Counters and the latency histogram are updated on the delivery path; depths (DLQ, retry
schedule) and the breaker's shared state are read from Redis when Prometheus scrapes. The retry
schedule's depth is exported here only: the workers are the part every deployment runs, and
their mover is what drains the schedule. Queue depths, the DLQ by reason and the cluster's
delivered/dead-lettered totals are the HTTP service's (`producers.http_metrics`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from eventq.depths import schedule_depth
from eventq.keys import Keys

__all__ = [
    "ATTEMPT_LATENCY",
    "DELIVERIES",
    "RATE_LIMITED",
    "RedisStateCollector",
    "serve_metrics",
    "serve_process_metrics",
]

log = logging.getLogger("eventq.metrics")

DELIVERIES = Counter(
    "eventq_attempts_total",
    "Attempt outcomes: delivered, retry, waiting (parked by limiter/breaker), dead_letter.",
    ["outcome"],
)
ATTEMPT_LATENCY = Histogram(
    "eventq_hubspot_request_seconds",
    "Latency of HubSpot requests as seen by the worker.",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATE_LIMITED = Counter(
    "eventq_rate_limited_total", "429 answers from HubSpot by policy.", ["policy"]
)


class RedisStateCollector(Collector):
    """Reads cluster-wide depths and shared state from Redis at scrape time."""

    def __init__(self, client: redis.Redis, keys: Keys, breaker_key: str) -> None:
        self._redis, self._keys, self._breaker_key = client, keys, breaker_key

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the DLQ depth, retry-schedule depth and breaker state."""
        try:
            schedule = schedule_depth(self._redis, self._keys)
            dlq = int(cast(int, self._redis.zcard(self._keys.dlq)))
            breaker = cast(Any, self._redis.hget(self._breaker_key, "state"))
        except redis.RedisError:
            return
        yield GaugeMetricFamily(
            "eventq_retry_schedule_depth", "Jobs waiting to be retried.", value=schedule
        )
        yield GaugeMetricFamily("eventq_dlq_depth", "Dead-letter entries.", value=dlq)
        state = (breaker.decode() if isinstance(breaker, bytes) else breaker) or "closed"
        family = GaugeMetricFamily(
            "eventq_breaker_open",
            "1 while the circuit breaker is open or half-open.",
            labels=["state"],
        )
        family.add_metric([state], 0.0 if state == "closed" else 1.0)
        yield family


def serve_metrics(port: int, client: redis.Redis, keys: Keys, breaker_key: str) -> None:
    """Start the `/metrics` endpoint on `port` (0 disables it) for this process's metrics."""
    if port == 0:
        return
    REGISTRY.register(RedisStateCollector(client, keys, breaker_key))
    _serve(port, REGISTRY, "this worker")


def serve_process_metrics(
    port: int, multiproc_dir: str, client: redis.Redis, keys: Keys, breaker_key: str
) -> None:
    """Serve on `port` the sum of the metrics every process writes into `multiproc_dir`.

    `eventq worker --processes N`: each child runs with `PROMETHEUS_MULTIPROC_DIR` set (so
    prometheus_client keeps its counters and histograms in files there) and serves nothing;
    the supervisor serves them added up, with the Redis-read depths once, on the one port.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    registry.register(RedisStateCollector(client, keys, breaker_key))
    _serve(port, registry, "eventq worker")


def _serve(port: int, registry: CollectorRegistry, who: str) -> None:
    try:
        start_http_server(port, registry=registry)
    except OSError as error:  # another worker on this host has the port: skip, do not die
        log.warning("metrics port %s unavailable (%s); %s serves no metrics", port, error, who)
