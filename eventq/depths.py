"""How many jobs wait: messages in a Redis broker's queues, and jobs in the retry schedule.

One home for both, used by the worker (its recovery sweep and its metrics) and the HTTP
service's `/metrics`. A queue's depth counts every list kombu keeps for it: with the Redis
transport a message sent with a priority waits in a sub-list named after the queue (kombu's
`PRIORITY_STEPS`, joined by its separator), and the consumer drains all of them. Sync and async
callers queue the same commands (`_add_queue_lengths`) and read the replies the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from eventq.keys import Keys

__all__ = [
    "queue_depths",
    "queue_depths_async",
    "queue_lists",
    "schedule_depth",
]


def queue_lists(queue: str) -> list[str]:
    """Return the Redis lists a queue's messages wait in, as kombu names them (one per step)."""
    return [queue if step == 0 else f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS]


def _add_queue_lengths(pipe: Any, queues: Sequence[str]) -> None:
    """Queue on `pipe` (sync or async pipeline) the commands `_fold` reads back."""
    for queue in queues:
        for name in queue_lists(queue):
            pipe.llen(name)


def _fold(queues: Sequence[str], lengths: Sequence[int]) -> dict[str, int]:
    per = len(PRIORITY_STEPS)
    return {q: sum(int(n) for n in lengths[i * per : (i + 1) * per]) for i, q in enumerate(queues)}


def queue_depths(broker: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Return how many messages wait in each queue (one round trip); raises redis.RedisError."""
    with broker.pipeline(transaction=False) as pipe:
        _add_queue_lengths(pipe, queues)
        return _fold(queues, pipe.execute())


async def queue_depths_async(broker: aioredis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Return `queue_depths` from an asyncio client; raises redis.RedisError."""
    async with broker.pipeline(transaction=False) as pipe:
        _add_queue_lengths(pipe, queues)
        return _fold(queues, await pipe.execute())


def schedule_depth(client: redis.Redis, keys: Keys) -> int:
    """Return how many jobs wait in the retry schedule; raises redis.RedisError."""
    return int(cast(int, client.zcard(keys.schedule)))
