"""One per worker process: the delivery machinery the hand-off (`worker.handoff`) runs attempts on.

The HTTP session, the batching Redis client, the limiter, the breaker and the credentials are
built on the hand-off's event loop, so many deliveries share them; beside them run the schedule
mover, the recovery sweep and the metrics port.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery

from eventq.depths import queue_depths
from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.messaging import queue_for, send_job
from eventq.schema import JobEnvelope
from eventq.settings import Settings
from worker.batcher import Batcher, BatchSender
from worker.circuit_breaker import CircuitBreaker
from worker.credentials import Credentials, StaticCredentials
from worker.delivery import Delivery
from worker.hubspot_client import HubSpotClient, new_session
from worker.metrics import serve_metrics
from worker.oauth import OAuthCredentials
from worker.rate_limit import RateLimiter
from worker.recovery import RecoverySweep
from worker.redis_batching import BatchingRedis
from worker.retry_policy import Backoff
from worker.retry_schedule import ScheduleMover

__all__ = ["Runtime"]

# runs a coroutine on the hand-off's loop and returns its result (`Handoff.call`)
OnLoop = Callable[[Coroutine[Any, Any, Any]], Any]


def _credentials(
    settings: Settings, client: aioredis.Redis, session: Any, limiter: RateLimiter
) -> Credentials:
    if settings.oauth_enabled:
        return OAuthCredentials.from_settings(settings, client, session, limiter)
    if settings.hubspot_access_token is None:
        raise RuntimeError("EVENTQ_HUBSPOT_ACCESS_TOKEN (or OAuth settings) must be set")
    has_read = settings.hubspot_token_has_read_scope
    return StaticCredentials(settings.hubspot_access_token, has_read_scope=has_read)


def _batcher(
    settings: Settings, client: HubSpotClient, limiter: RateLimiter, breaker: CircuitBreaker
) -> Batcher | None:
    """Return the process's batcher, or None when EVENTQ_BULK_MODE=create (each job alone)."""
    if settings.bulk_mode != "upsert":
        return None
    sender = BatchSender(
        client,
        limiter,
        breaker,
        size=settings.batch_size,
        max_limiter_wait_s=settings.max_limiter_wait_s,
    )
    return Batcher(sender, wait_s=settings.batch_wait_ms / 1000, live=settings.live_batching)


def lock_ttl_ms(settings: Settings) -> int:
    """Return how long one attempt may hold its job: two requests, two limiter waits, a batch's
    gathering, slack."""
    per_request_s = settings.connect_timeout_s + settings.read_timeout_s
    waits_s = 2 * settings.max_limiter_wait_s + settings.batch_wait_ms / 1000
    return int((2 * per_request_s + waits_s + 10) * 1000)


class Runtime:
    """The per-process delivery machinery, built on the loop `on_loop` runs coroutines on."""

    def __init__(self, settings: Settings, app: Celery, on_loop: OnLoop) -> None:
        self.settings = settings
        self.app = app
        self.keys = Keys(settings.key_prefix)
        broker = settings.effective_broker_url
        self._broker_redis = redis.Redis.from_url(broker) if broker.startswith("redis") else None
        self.delivery: Delivery = on_loop(self._build())
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
        hubspot = HubSpotClient(self.session, s.hubspot_base_url)
        breaker = CircuitBreaker(
            client,
            prefix=s.key_prefix,
            failures_to_open=s.breaker_failures,
            cooldown_s=s.breaker_cooldown_s,
        )
        return Delivery(
            jobs=JobStore(client, self.keys, ledger_ttl_s=s.ledger_ttl_s, job_ttl_s=s.job_ttl_s),
            client=hubspot,
            limiter=limiter,
            breaker=breaker,
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
            batcher=_batcher(s, hubspot, limiter, breaker),
        )

    def _publish(self, envelope: JobEnvelope) -> None:
        send_job(self.app, envelope, self.settings)

    def _queue_depth(self, envelope: JobEnvelope) -> int | None:
        """Return how many messages wait in the job's queue; None when the broker is not Redis."""
        if self._broker_redis is None:
            return None
        queue = queue_for(envelope, self.settings)
        return queue_depths(self._broker_redis, [queue])[queue]

    def close(self, on_loop: OnLoop) -> None:
        """Stop the mover and the sweep, and close the HTTP session on the loop."""
        self.mover.stop()
        self.recovery.stop()
        on_loop(self.session.close())
