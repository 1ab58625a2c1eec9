"""The broker is switchable: RabbitMQ carries the Celery messages while Redis keeps the state.

Needs RabbitMQ on localhost:5672 (guest/guest); skipped without it. Each test declares its own
queues (unique names) and deletes them, with their exchanges, afterwards.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import status_of, writes

AMQP_URL = "amqp://guest:guest@localhost:5672//"
JOBS = 50


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def amqp_stack(stack: Stack) -> Iterator[Stack]:
    if not _rabbitmq_up():
        pytest.skip("RabbitMQ is not running on localhost:5672")
    stack.env["EVENTQ_BROKER_URL"] = AMQP_URL
    try:
        yield stack
    finally:
        stack.stop_workers()
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            channel = conn.channel()
            for name in (stack.env["EVENTQ_QUEUE"], stack.env["EVENTQ_BULK_QUEUE"]):
                channel.queue_delete(name)
                channel.exchange_delete(name)


def _queued_on_rabbitmq(name: str) -> int:
    with Connection(AMQP_URL, connect_timeout=5) as conn:
        declared = conn.channel().queue_declare(name, passive=True)
        return int(declared.message_count)


def test_50_jobs_and_a_503_retry_are_delivered_once_with_rabbitmq_as_broker(
    amqp_stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    stack = amqp_stack
    # Given EVENTQ_BROKER_URL=amqp://… (Redis still holds jobs, schedule, ledger) and a worker
    stack.start_worker(concurrency=16)
    settings = stack.settings
    assert settings.effective_broker_url.startswith("amqp://")
    # When the first create is answered 503 and 50 jobs are enqueued
    fake.fail_next(1, 503)
    job_ids = [Producer(settings).enqueue(valid_event(f"amqp-{i}"))[0] for i in range(JOBS)]

    # Then all 50 are delivered, each event created once
    def delivered() -> bool:
        states = Counter(getattr(status_of(stack, j), "state", "missing") for j in job_ids)
        return states["delivered"] == JOBS

    wait_for(delivered, 60, "50 jobs delivered over RabbitMQ", every_s=0.5)
    per_event = Counter(e["body"]["externalEventId"] for e in fake.events())
    assert per_event == Counter({f"evt-amqp-{i}": 1 for i in range(JOBS)})
    # and the 503'd job went through the retry schedule (back over RabbitMQ) to attempt 2
    statuses = [p["status"] for p in writes(fake.requests())]
    assert sorted(statuses) == [200] * JOBS + [503]
    attempts = Counter(getattr(status_of(stack, j), "attempts", 0) for j in job_ids)
    assert attempts == Counter({1: JOBS - 1, 2: 1})
    # and the messages travelled on RabbitMQ, not on Redis lists
    assert _queued_on_rabbitmq(settings.queue) == 0
    assert redis_client.exists(settings.queue) == 0
