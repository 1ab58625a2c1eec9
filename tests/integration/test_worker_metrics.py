"""A worker's metrics read the cluster's retry schedule, DLQ and breaker from Redis at scrape time.

The collector is read directly against the real Redis (the port it is served on is a
prometheus_client detail); each depth is exported by one process kind only, and the retry
schedule's is the workers' (the HTTP service's /metrics leaves it out: test_http_ops.py).
"""

from __future__ import annotations

import redis

from eventq.keys import Keys
from tests.conftest import Stack
from tests.integration.http_support import seed_dead_letter
from worker.metrics import RedisStateCollector


def _scrape(collector: RedisStateCollector) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in collector.collect()
        for sample in family.samples
    }


def test_a_worker_scrape_shows_the_retry_schedule_the_dlq_and_an_open_breaker(
    stack: Stack, redis_client: redis.Redis
) -> None:
    # Given two jobs parked for a retry, one dead letter and an open breaker
    keys = Keys(stack.settings.key_prefix)
    breaker_key = keys.breaker("metrics-test")
    redis_client.zadd(keys.schedule, {"job-a": 1.0, "job-b": 2.0})
    seed_dead_letter(stack.settings, {"eventName": "x"})
    redis_client.hset(breaker_key, "state", "open")
    # When Prometheus scrapes a worker
    found = _scrape(RedisStateCollector(redis_client, keys, breaker_key))
    # Then it shows each (the stack fixture deletes the test's keys)
    assert found[("eventq_retry_schedule_depth", ())] == 2
    assert found[("eventq_dlq_depth", ())] == 1
    assert found[("eventq_breaker_open", ("open",))] == 1


def test_a_worker_scrape_leaves_the_depths_out_when_redis_cannot_be_read(stack: Stack) -> None:
    # Given a Redis that does not answer
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    collector = RedisStateCollector(unreachable, Keys(stack.settings.key_prefix), "nowhere")
    # When Prometheus scrapes, Then the scrape succeeds without the Redis-read figures
    assert _scrape(collector) == {}
