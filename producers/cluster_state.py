"""What the cluster is doing, read from Redis: the one reader behind `/metrics` and the overview.

Queue depths (live, bulk, retry schedule), the delivered/dead-lettered totals, outcomes per
minute over the last hour, the DLQ's counts by reason and its largest groups, and, through a
`SharedState` reader the command line passes in (`worker.shared_state`), each limiter bucket's
use and pause and the breaker's state. Every number is kept on write by its owner
(`eventq.depths`, `eventq.activity`, `eventq.dead_letters`, the limiter, the breaker); reading
is a few round trips, never a scan of the DLQ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import redis.asyncio as aioredis

from eventq.activity import MinuteCounts, read_minutes
from eventq.dead_letters import DeadLetterCounts, read_counts_async
from eventq.depths import queue_depths_async
from eventq.keys import Keys
from eventq.redis_io import as_text
from eventq.settings import Settings

__all__ = [
    "BreakerView",
    "BucketView",
    "ClusterReader",
    "ClusterState",
    "SharedState",
    "SharedStateFactory",
]

TOP_GROUPS = 10
HOUR_MINUTES = 60


class BucketView(Protocol):
    """One limiter bucket as the overview shows it."""

    @property
    def label(self) -> str: ...  # `private app` or `portal <id>`; never a token
    @property
    def budget(self) -> int: ...
    @property
    def window_s(self) -> float: ...
    @property
    def used(self) -> int: ...
    @property
    def reserved(self) -> int: ...
    @property
    def paused_until(self) -> float | None: ...
    @property
    def reason(self) -> str | None: ...


class BreakerView(Protocol):
    """One HubSpot base URL's breaker as the overview shows it."""

    @property
    def target(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def failures(self) -> int: ...
    @property
    def open_until(self) -> float | None: ...


class SharedState(Protocol):
    """Reads the limiter's buckets and the breakers (`worker.shared_state.SharedStateReader`)."""

    async def buckets(self) -> Sequence[BucketView]:
        """Return each bucket's use and pause; raises redis.RedisError."""
        ...

    async def breakers(self) -> Sequence[BreakerView]:
        """Return each breaker's state; raises redis.RedisError."""
        ...


SharedStateFactory = Callable[[aioredis.Redis], SharedState]
"""Makes a SharedState reader from the service's Redis client."""


@dataclass(frozen=True)
class ClusterState:
    """Everything the overview and `/metrics` show, read at `at` (epoch seconds)."""

    at: float
    queues: dict[str, int] | None  # None: the broker is not Redis
    schedule: int
    counters: dict[str, int]
    dead_letters: DeadLetterCounts
    minutes: list[MinuteCounts]
    buckets: Sequence[BucketView]
    breakers: Sequence[BreakerView]


class _NoSharedState:
    async def buckets(self) -> Sequence[BucketView]:
        return []

    async def breakers(self) -> Sequence[BreakerView]:
        return []


class ClusterReader:
    """Reads a ClusterState for one deployment."""

    def __init__(
        self,
        settings: Settings,
        client: aioredis.Redis,
        broker: aioredis.Redis | None,
        shared: SharedState | None = None,
    ) -> None:
        self._settings = settings
        self._redis = client
        self._broker = broker
        self._keys = Keys(settings.key_prefix)
        self._shared: SharedState = shared or _NoSharedState()

    async def read(self) -> ClusterState:
        """Return the cluster's state now; raises redis.RedisError when Redis is unreachable."""
        keys, now = self._keys, time.time()
        queues, schedule, counters, dead, minutes, (buckets, breakers) = await asyncio.gather(
            self._queues(),
            cast(Awaitable[int], self._redis.zcard(keys.schedule)),
            cast(Awaitable[dict[bytes, bytes]], self._redis.hgetall(keys.counters)),
            read_counts_async(self._redis, keys, TOP_GROUPS),
            read_minutes(self._redis, keys, now=now, minutes=HOUR_MINUTES),
            self._shared_state(),
        )
        return ClusterState(
            at=now,
            queues=queues,
            schedule=int(schedule),
            counters={as_text(k): int(v) for k, v in counters.items()},
            dead_letters=dead,
            minutes=minutes,
            buckets=buckets,
            breakers=breakers,
        )

    async def _shared_state(self) -> tuple[Sequence[BucketView], Sequence[BreakerView]]:
        return await asyncio.gather(self._shared.buckets(), self._shared.breakers())

    async def _queues(self) -> dict[str, int] | None:
        if self._broker is None:
            return None
        names = [self._settings.queue, self._settings.bulk_queue]
        return await queue_depths_async(self._broker, names)
