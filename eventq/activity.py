"""Attempt outcomes per minute (delivered, retried, dead-lettered), counted on write.

`retried` counts attempts that got an answer (or none) and were scheduled again, a 429 included
(its attempt record says `retry` too); a job parked by the limiter or the breaker before it was
sent (`waiting`) is not counted.

The job record's transactions (`eventq.jobs.JobStore`) queue one HINCRBY on the minute's hash
with `count_outcome`; the hash expires after `KEEP_S`, so the last hour is always there to
read and nothing needs cleaning up. The overview reads an hour of minutes in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import redis.asyncio as aioredis

from eventq.keys import Keys
from eventq.redis_io import as_text

__all__ = ["KEEP_S", "OUTCOMES", "MinuteCounts", "Outcome", "count_outcome", "read_minutes"]

Outcome = Literal["delivered", "retried", "dead_lettered"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("delivered", "retried", "dead_lettered")
KEEP_S: Final = 2 * 3600  # a minute's hash outlives the hour the overview shows


@dataclass(frozen=True)
class MinuteCounts:
    """What happened in one minute (`minute`: its start, epoch seconds)."""

    minute: int
    delivered: int
    retried: int
    dead_lettered: int


def count_outcome(pipe: Any, keys: Keys, outcome: Outcome, at: float) -> None:
    """Queue on `pipe` (sync or async) the count of one `outcome` at `at` (epoch seconds)."""
    key = keys.activity(int(at // 60))
    pipe.hincrby(key, outcome, 1)
    pipe.expire(key, KEEP_S)


async def read_minutes(
    client: aioredis.Redis, keys: Keys, *, now: float, minutes: int = 60
) -> list[MinuteCounts]:
    """Return the last `minutes` minutes up to `now`, oldest first; raises redis.RedisError."""
    last = int(now // 60)
    span = range(last - minutes + 1, last + 1)
    async with client.pipeline(transaction=False) as pipe:
        for minute in span:
            pipe.hgetall(keys.activity(minute))
        replies = await pipe.execute()
    return [_counts(minute, fields) for minute, fields in zip(span, replies, strict=True)]


def _counts(minute: int, fields: dict[Any, Any]) -> MinuteCounts:
    got = {as_text(k): int(v) for k, v in fields.items()}
    return MinuteCounts(
        minute * 60,
        got.get("delivered", 0),
        got.get("retried", 0),
        got.get("dead_lettered", 0),
    )
