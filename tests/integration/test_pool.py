"""The pool/task hand-off (`worker.handoff.Handoff`): every outcome reaches Celery and its ack.

The asyncio pool runs attempts on the hand-off's event loop and hands them back to Celery's
consumer thread, which acks them (acks_late). An attempt that was never handed back or never
acked shows up in kombu's `unacked` hash and would be redelivered, as a no-op, after the
visibility timeout; the first test catches that before it costs a redelivery per job. The
others take the failure path under every pool: our Redis out of reach during an attempt. (A
SIGTERM draining the attempts in flight: tests/integration/test_operations.py.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fake_hubspot.control import FakeHubSpot, free_port
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import wait_state, writes
from tests.integration.test_durability import OwnRedis

JOBS = 120


def _unacked_for(client: redis.Redis, queue: str) -> int:
    """Count the messages of `queue` that kombu still holds as delivered and not acked."""
    entries = client.hvals("unacked")
    return sum(1 for raw in entries if json.loads(raw)[2] == queue)


def test_batched_acks_leave_no_message_unacked(stack: Stack, fake: FakeHubSpot) -> None:
    # Given answers slow enough that many attempts finish in the same loop iteration, and so
    # are handed back to Celery together
    fake.set_latency(ms=100)
    client = redis.Redis.from_url(stack.settings.redis_url)
    stack.start_worker(concurrency=32)
    # When 120 jobs are delivered
    results = Producer(stack.settings).enqueue_many([valid_event(f"ack-{i}") for i in range(JOBS)])
    job_ids = [r.job_id for r in results if r.job_id]
    assert len(job_ids) == JOBS
    fake.wait_for_events(JOBS, timeout_s=60)
    for job_id in job_ids:
        wait_state(stack, job_id, "delivered")
    # Then every message is acked in Redis (kombu's unacked hash holds none of this queue's)
    wait_for(
        lambda: _unacked_for(client, stack.settings.queue) == 0,
        10,
        "kombu's unacked hash to hold none of this test's messages",
    )
    assert client.llen(stack.settings.queue) == 0


@pytest.fixture
def state_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A redis-server for the job state alone, which the test stops and starts again."""
    workdir = tmp_path / "state-redis"
    workdir.mkdir()
    server = OwnRedis(workdir, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "pool", [(), ("-P", "threads"), ("-P", "solo")], ids=["asyncio", "threads", "solo"]
)
def test_a_redis_outage_during_an_attempt_requeues_the_message_and_the_job_is_delivered_after(
    stack: Stack, fake: FakeHubSpot, state_redis: OwnRedis, pool: tuple[str, ...]
) -> None:
    # Given a job accepted, its state in a Redis of its own, its message on the (shared) broker
    stack.env["EVENTQ_BROKER_URL"] = stack.env["EVENTQ_REDIS_URL"]
    stack.env["EVENTQ_REDIS_URL"] = state_redis.url
    broker = redis.Redis.from_url(stack.env["EVENTQ_BROKER_URL"])
    job_id, _ = Producer(stack.settings).enqueue(valid_event("outage"))
    assert job_id is not None
    # and that state Redis down when a worker takes the message
    state_redis.stop()
    stack.start_worker(concurrency=4, extra_args=pool)
    # When the worker's attempts fail on Redis errors
    wait_for(
        lambda: "Redis unavailable, message requeued" in stack.log_text(),
        20,
        "an attempt to meet the outage and requeue its message",
    )
    # Then nothing was sent to HubSpot, and the message is still the broker's (queued, or held
    # unacked by the worker between two tries), never acked as done
    assert writes(fake.requests()) == []
    wait_for(
        lambda: broker.llen(stack.settings.queue) + _unacked_for(broker, stack.settings.queue),
        5,
        "the message to be back in the queue or held unacked",
    )
    # When the state Redis comes back
    state_redis.start()
    # Then the requeued message delivers the job, once (the recovery sweep is far too slow to
    # be what delivers it: it waits for a minute of no progress)
    wait_state(stack, job_id, "delivered", timeout_s=20)
    assert [w["method"] for w in writes(fake.requests())] == ["POST"]
    # and no attempt was a task failure (Celery logs those as "raised unexpected")
    assert "raised unexpected" not in stack.log_text()
