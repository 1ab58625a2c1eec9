"""The asyncio pool reports every finished attempt to Celery, whose acks then reach Redis.

The pool runs attempts on its own event loop and hands them back to Celery's consumer thread,
which acks them (acks_late). An attempt that was never handed back or never acked shows up in
kombu's `unacked` hash and would be redelivered, as a no-op, after the visibility timeout; this
test catches that before it costs a redelivery per job.
"""

from __future__ import annotations

import json

import redis

from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import wait_state

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
