"""Redis killed with SIGKILL mid-run and restarted: every accepted job is delivered exactly once.

The kill test starts its own `redis-server` (AOF on, `appendfsync everysec`, a tmp dir, a free
port) because it kills it; the shared Redis on 6379 is never touched.

What a SIGKILL of the Redis *process* can lose: nothing Redis acknowledged. With AOF on, Redis
write()s each command to the AOF before it replies, so the kernel holds it even if the process
dies; `appendfsync` only decides how much a crash of the *host* (power, kernel, VM) can lose.
docs/operating.md states the guarantee per setting.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from eventq.jobs import create_job
from eventq.keys import Keys
from eventq.schema import JobEnvelope, MarketingEvent
from eventq_cli.stack import start_redis
from fake_hubspot.control import FakeHubSpot, free_port
from producers.enqueue import Producer
from tests.conftest import TOKEN, Stack, valid_event, wait_for
from tests.integration.helpers import states_of, wait_state

JOBS = 1000
KILL_AFTER_DELIVERED = 300


class OwnRedis:
    """A redis-server this test may kill: AOF with `appendfsync everysec`, in its own dir."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # the same redis-server, flags and AOF settings that `eventq run` starts
        self.proc = start_redis(self.url, self.workdir, ready_timeout_s=15)
        if self.proc is None:
            pytest.fail(f"could not start redis-server on port {self.port}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = OwnRedis(workdir, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_stack(own_redis: OwnRedis, fake: FakeHubSpot, tmp_path: Path) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    env = {
        "EVENTQ_REDIS_URL": own_redis.url,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "EVENTQ_KEY_PREFIX": f"d-{tag}",
        "EVENTQ_QUEUE": f"dq-{tag}",
        "EVENTQ_BULK_QUEUE": f"dqb-{tag}",
        "EVENTQ_BACKOFF_BASE_S": "0.5",
        "EVENTQ_MAX_ATTEMPTS": "8",
        "EVENTQ_CONNECT_TIMEOUT_S": "2",
        "EVENTQ_READ_TIMEOUT_S": "2",
        # an unacked message of an attempt cut short by the outage comes back after this
        "EVENTQ_VISIBILITY_TIMEOUT_S": "5",
        "EVENTQ_RATE_LIMIT": "1000/1s",
        "EVENTQ_RATE_LIMIT_PAD_MS": "0",
        "EVENTQ_METRICS_PORT": "0",
        "EVENTQ_BREAKER_FAILURES": "1000",
        "EVENTQ_SCHEDULER_INTERVAL_S": "0.05",
        # a job whose message the crash lost is republished after this long without progress
        "EVENTQ_RECOVER_AFTER_S": "10",
    }
    made = Stack(env=env, tmp=tmp_path)
    try:
        yield made
    finally:
        made.stop_workers()


def _supervise(stack: Stack, job_ids: list[str], timeout_s: float) -> Counter[str]:
    """Restart exited workers (as `restart: unless-stopped` does) until every job is delivered
    or `timeout_s` passes; returns the jobs' states at the end."""
    deadline = time.monotonic() + timeout_s
    while (states := states_of(stack, job_ids))["delivered"] < len(job_ids):
        if time.monotonic() > deadline:
            break
        if all(w.poll() is not None for w in stack.workers):
            stack.start_worker(concurrency=16)
        time.sleep(1)
    return states


def test_redis_killed_and_restarted_mid_run_every_accepted_job_is_delivered_exactly_once(
    durable_stack: Stack, own_redis: OwnRedis, fake: FakeHubSpot
) -> None:
    stack = durable_stack
    # Given 1,000 accepted jobs (enqueue returned a job id for each) and a worker delivering them
    producer = Producer(stack.settings)
    accepted = [producer.enqueue(valid_event(f"dur-{i}"))[0] for i in range(JOBS)]
    assert len(set(accepted)) == JOBS
    stack.start_worker(concurrency=16)
    wait_for(lambda: fake.stats()["events"] >= KILL_AFTER_DELIVERED, 60, "300 events delivered")
    # When Redis is killed with SIGKILL mid-run and restarted a second later on the same dir
    own_redis.kill()
    killed_at_events = fake.stats()["events"]
    time.sleep(1.0)
    own_redis.start()
    # (a worker that exits is restarted, as compose's `restart: unless-stopped` would)
    states = _supervise(stack, accepted, 45)
    # Then no event was ever created twice at HubSpot, and the kill really happened mid-run
    per_event = Counter(e["body"]["externalEventId"] for e in fake.events())
    assert {k: n for k, n in per_event.items() if n > 1} == {}
    assert KILL_AFTER_DELIVERED <= killed_at_events < JOBS
    # and every accepted job is delivered: nothing the AOF held was lost
    assert "missing" not in states, states
    assert states["delivered"] == JOBS, dict(states)
    assert set(per_event) == {f"evt-dur-{i}" for i in range(JOBS)}


def test_an_enqueue_retried_after_redis_died_before_the_publish_is_delivered(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a job recorded in Redis whose message was never published: Redis died between
    # create_job and send_job, the producer's enqueue raised and its clean-up could not run
    settings = stack.settings
    envelope = JobEnvelope(event=MarketingEvent.model_validate(valid_event("orphan")))
    client = redis.Redis.from_url(settings.redis_url)
    create_job(client, Keys(settings.key_prefix), envelope, dedupe_ttl_s=600)
    # (a minute ago: past the grace period in which its producer could still be publishing)
    client.hset(Keys(settings.key_prefix).job(envelope.jobId), "createdAt", time.time() - 60)
    stack.start_worker()
    # When the caller retries the same event once Redis is back, and gets a job id
    job_id, duplicate = Producer(settings).enqueue(valid_event("orphan"))
    assert (job_id, duplicate) == (envelope.jobId, True)
    # Then that accepted job is delivered
    wait_state(stack, job_id, "delivered", timeout_s=15)


RESTARTS = 10
JOBS_PER_RESTART = 3


def test_one_worker_survives_ten_redis_restarts_with_deliveries_in_flight(
    durable_stack: Stack, own_redis: OwnRedis, fake: FakeHubSpot
) -> None:
    stack = durable_stack
    stack.env.update({"EVENTQ_VISIBILITY_TIMEOUT_S": "2", "EVENTQ_RECOVER_AFTER_S": "5"})
    # Given one worker, and HubSpot answering slowly enough that deliveries are in flight
    fake.set_latency(ms=400)
    worker = stack.start_worker(concurrency=8)
    producer = Producer(stack.settings)
    accepted: list[str] = []
    for restart in range(RESTARTS):
        # When jobs are enqueued, HubSpot is answering all of them (400 ms), and Redis is
        # SIGKILLed and restarted
        sent = fake.stats()["requests"]
        accepted += [
            producer.enqueue(valid_event(f"rs-{restart}-{i}"))[0] for i in range(JOBS_PER_RESTART)
        ]
        wait_for(
            lambda s=sent: fake.stats()["requests"] >= s + JOBS_PER_RESTART,
            15,
            "every delivery of the round in flight at HubSpot",
        )
        own_redis.kill()
        own_redis.start()
        producer = Producer(stack.settings)  # the producer's pool holds dead connections
        # (every job of this round is delivered before the next restart)
        wait_for(
            lambda ids=list(accepted): states_of(stack, ids)["delivered"] == len(ids),
            30,
            f"round {restart}: {len(accepted)} jobs delivered",
        )
    # Then the same worker process is alive, every job was created at HubSpot exactly once
    assert worker.poll() is None
    per_event = Counter(e["body"]["externalEventId"] for e in fake.events())
    assert {k: n for k, n in per_event.items() if n > 1} == {}
    assert len(per_event) == RESTARTS * JOBS_PER_RESTART
    # and its log holds no traceback, and one line of the pool per lost connection, not one
    # per delivery in flight
    log = stack.log_text()
    assert "Traceback" not in log, log
    assert "Unrecoverable error" not in log
    assert "cannot be acknowledged after a connection loss" not in log
    assert "Failed to cancel" not in log
    assert 1 <= log.count("eventq.pool: broker connection lost") <= RESTARTS
    assert "WARNING eventq.task" not in log  # a job cut off from Redis is an INFO line
    assert "WARNING celery.app.trace" not in log
