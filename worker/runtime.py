"""One per worker process: the event loop thread, the HTTP session, Redis clients, the mover.

`worker.pool.AsyncioPool` starts each job's attempt on this loop and reports the outcome to
Celery when it is recorded (other pools call `Runtime.deliver` and wait), so many deliveries
share one aiohttp session, one loop and batched Redis round trips while Celery keeps acks and
prefetch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import redis
import redis.asyncio as aioredis
from celery import Celery

from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.messaging import queue_for, send_job
from eventq.schema import JobEnvelope
from eventq.settings import Settings
from worker.circuit_breaker import CircuitBreaker
from worker.credentials import Credentials, StaticCredentials
from worker.delivery import Delivery, Outcome
from worker.hubspot_client import HubSpotClient, new_session
from worker.metrics import serve_metrics
from worker.oauth import OAuthCredentials
from worker.rate_limit import RateLimiter
from worker.recovery import RecoverySweep
from worker.redis_batching import BatchingRedis
from worker.retry_policy import Backoff
from worker.retry_schedule import ScheduleMover

__all__ = ["Runtime", "get_runtime"]

log = logging.getLogger("eventq.worker")
T = TypeVar("T")


def _credentials(
    settings: Settings, client: aioredis.Redis, session: Any, limiter: RateLimiter
) -> Credentials:
    if settings.oauth_enabled:
        return OAuthCredentials.from_settings(settings, client, session, limiter)
    if settings.hubspot_access_token is None:
        raise RuntimeError("EVENTQ_HUBSPOT_ACCESS_TOKEN (or OAuth settings) must be set")
    has_read = settings.hubspot_token_has_read_scope
    return StaticCredentials(settings.hubspot_access_token, has_read_scope=has_read)


def lock_ttl_ms(settings: Settings) -> int:
    """Return how long one attempt may hold its job: two requests, two limiter waits, slack."""
    per_request_s = settings.connect_timeout_s + settings.read_timeout_s
    return int((2 * per_request_s + 2 * settings.max_limiter_wait_s + 10) * 1000)


class Runtime:
    """The per-process delivery machinery, started lazily on first use."""

    def __init__(self, settings: Settings, app: Celery) -> None:
        self.settings = settings
        self.app = app
        self.keys = Keys(settings.key_prefix)
        self._prepared: dict[str, Outcome | BaseException] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        broker = settings.effective_broker_url
        self._broker_redis = redis.Redis.from_url(broker) if broker.startswith("redis") else None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="eventq-loop", daemon=True
        )
        self._thread.start()
        self.delivery: Delivery = self.call(self._build())
        # one blocking client (its pool is thread-safe) for the mover, the sweep and metrics
        state = redis.Redis.from_url(settings.redis_url)
        self.mover = ScheduleMover(
            state,
            self.keys,
            self._publish,
            interval_s=settings.scheduler_interval_s,
        )
        self.mover.start()
        self.recovery = RecoverySweep(
            state,
            self.keys,
            self._publish,
            self._queue_depth,
            stale_after_s=settings.recover_after_s
            or settings.visibility_timeout_s + lock_ttl_ms(settings) / 1000 + 30,
        )
        self.recovery.start()
        serve_metrics(
            settings.metrics_port,
            state,
            self.keys,
            self.delivery.breaker.state_key(settings.hubspot_base_url),
        )

    async def _build(self) -> Delivery:
        s = self.settings
        # one pipelined round trip per loop iteration for every delivery in flight
        client = BatchingRedis.from_url(s.redis_url, max_connections=max(16, s.concurrency))
        self.session = new_session(
            connect_timeout_s=s.connect_timeout_s,
            read_timeout_s=s.read_timeout_s,
            max_connections=s.concurrency,
        )
        # one limiter: the accounts' budgets OAuth sets are the ones the deliveries read
        limiter = RateLimiter.from_settings(client, s)
        return Delivery(
            jobs=JobStore(client, self.keys, ledger_ttl_s=s.ledger_ttl_s, job_ttl_s=s.job_ttl_s),
            client=HubSpotClient(self.session, s.hubspot_base_url),
            limiter=limiter,
            breaker=CircuitBreaker(
                client,
                prefix=s.key_prefix,
                failures_to_open=s.breaker_failures,
                cooldown_s=s.breaker_cooldown_s,
            ),
            credentials=_credentials(s, client, self.session, limiter),
            policy=Backoff(
                base_s=s.backoff_base_s,
                cap_s=s.backoff_cap_s,
                jitter=s.backoff_jitter,
                max_attempts=s.max_attempts,
                max_age_s=s.max_age_s,
            ),
            max_limiter_wait_s=s.max_limiter_wait_s,
            lock_ttl_ms=lock_ttl_ms(s),
            daily_reset_utc_hour=s.daily_reset_utc_hour,
        )

    def _publish(self, envelope: JobEnvelope) -> None:
        send_job(self.app, envelope, self.settings)

    def _queue_depth(self, envelope: JobEnvelope) -> int | None:
        """Return how many messages wait in the job's queue; None when the broker is not Redis."""
        if self._broker_redis is None:
            return None
        return int(cast(int, self._broker_redis.llen(queue_for(envelope, self.settings))))

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the runtime's loop and return its result (blocks the calling thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def deliver(self, raw: object, task_id: str) -> Outcome:
        """Return the outcome of one attempt of the job carried by a message.

        Under `worker.pool.AsyncioPool` the attempt already ran on the loop and its outcome (or
        error) was prepared; otherwise (solo, threads) it runs now, blocking this thread.
        """
        prepared = self._prepared.pop(task_id, None)
        if isinstance(prepared, BaseException):
            raise prepared
        if prepared is not None:
            return prepared
        return self.call(self.delivery.run(raw, task_id))

    def prepare(self, task_id: str, result: Outcome | BaseException) -> None:
        """Hold an attempt that already ran on the loop (`worker.pool`) for `deliver` to report."""
        self._prepared[task_id] = result

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to a delivery task until it finishes (the loop holds weak ones)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop the mover, close the session and stop the loop."""
        self.mover.stop()
        self.recovery.stop()
        try:
            self.call(self.session.close(), timeout_s=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


_runtime: Runtime | None = None
_runtime_pid: int | None = None
_lock = threading.Lock()


def get_runtime(settings: Settings, app: Celery) -> Runtime:
    """Return this process's runtime, creating it on first use (and again after a fork)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime(settings, app)
            _runtime_pid = os.getpid()
            log.info("delivery runtime started in pid %s", _runtime_pid)
        return _runtime


def shutdown_runtime() -> None:
    """Close this process's runtime if it was started."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None
