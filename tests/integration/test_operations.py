"""Operating a worker: SIGTERM (a deploy, a scale-down, `docker compose stop`) loses nothing.

Real `celery worker` processes, the shared test Redis and the fake HubSpot answering slowly, so
that a known number of deliveries are in flight when the signal arrives.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import redis

from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import states_of, writes

LATENCY_MS = 1500
CONCURRENCY = 4
JOBS = 20
# 8 messages reserved by 4 threads: 4 run, 4 wait in the pool; both kinds must survive SIGTERM
PREFETCH_TWO = {"EVENTQ_PREFETCH_MULTIPLIER": "2"}


def test_sigterm_finishes_in_flight_deliveries_leaves_the_rest_queued_and_loses_nothing(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given HubSpot answers after 1.5 s, 20 jobs queued and a worker with 4 deliveries in flight
    # (and 4 more messages reserved, waiting for a free thread)
    fake.set_latency(ms=LATENCY_MS)
    settings = stack.settings
    client = redis.Redis.from_url(settings.redis_url)
    job_ids = [Producer(settings).enqueue(valid_event(f"term-{i}"))[0] for i in range(JOBS)]
    worker = stack.start_worker(concurrency=CONCURRENCY, extra_env=PREFETCH_TWO)
    wait_for(lambda: len(fake.requests()) >= CONCURRENCY, 15, "4 POSTs in flight")
    in_flight = len(fake.requests())
    # When the worker gets SIGTERM
    signalled_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(LATENCY_MS / 1000 + 15)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"worker ignored SIGTERM:\n{stack.log_text()[-3000:]}") from None
    stopped_after_s = time.monotonic() - signalled_at
    # Then it stopped within the bound, after the in-flight deliveries were answered and recorded
    assert worker.returncode == 0, stack.log_text()[-3000:]
    assert stopped_after_s < LATENCY_MS / 1000 + 10
    posted_before_stop = writes(fake.requests())
    assert len(posted_before_stop) == in_flight, "no new job was started after SIGTERM"
    assert all(p["status"] == 200 for p in posted_before_stop)
    states = states_of(stack, job_ids)
    assert states == Counter({"delivered": in_flight, "queued": JOBS - in_flight}), states
    # and the rest wait in the broker queue, not in the dead worker's memory
    assert client.llen(settings.queue) == JOBS - in_flight
    # When a new worker starts
    fake.set_latency(ms=0)
    stack.start_worker(concurrency=CONCURRENCY)
    # Then every job is delivered, each event created exactly once
    wait_for(lambda: states_of(stack, job_ids)["delivered"] == JOBS, 30, "all jobs delivered")
    events = fake.events()
    per_event = Counter(e["body"]["externalEventId"] for e in events)
    assert per_event == Counter({f"evt-term-{i}": 1 for i in range(JOBS)})
    assert len(writes(fake.requests())) == JOBS, "no job was POSTed twice"
