"""Queue and retry-schedule depths (eventq.depths) read what the broker and the schedule hold.

Real Redis, real kombu publishing: a message sent with a priority waits in a sub-list kombu
names after the queue, and the depth must count it, or the recovery sweep would republish a job
whose message is only waiting behind others.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from eventq.depths import queue_depths, queue_depths_async, queue_lists, schedule_depth
from eventq.keys import Keys
from eventq.messaging import TASK_NAME, make_celery
from tests.conftest import Stack


def test_a_queue_depth_counts_messages_sent_with_and_without_a_priority(
    stack: Stack, redis_client: redis.Redis
) -> None:
    # Given one message sent plainly and two sent with priorities, through Celery and kombu
    settings = stack.settings
    app = make_celery(settings)
    queue, bulk = settings.queue, settings.bulk_queue
    try:
        app.send_task(TASK_NAME, args=[{}], queue=queue)
        app.send_task(TASK_NAME, args=[{}], queue=queue, priority=5)
        app.send_task(TASK_NAME, args=[{}], queue=queue, priority=9)
        # (the prioritised ones really went to kombu's sub-lists, not the plain list)
        assert redis_client.llen(queue) == 1
        # When the depths are read, sync and async
        sync = queue_depths(redis_client, [queue, bulk])
        async_ = asyncio.run(_read_async(settings.redis_url, [queue, bulk]))
        # Then every message of the queue is counted, and the empty queue reads 0
        assert sync == async_ == {queue: 3, bulk: 0}
    finally:
        redis_client.delete(*queue_lists(queue))
        app.close()


async def _read_async(url: str, queues: list[str]) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        return await queue_depths_async(client, queues)
    finally:
        await client.aclose()


def test_the_schedule_depth_counts_the_jobs_waiting_for_a_retry(
    stack: Stack, redis_client: redis.Redis
) -> None:
    # Given two jobs parked in the retry schedule
    keys = Keys(stack.settings.key_prefix)
    redis_client.zadd(keys.schedule, {"job-a": 1.0, "job-b": 2.0})
    # When its depth is read, Then both are counted (the stack fixture deletes the test's keys)
    assert schedule_depth(redis_client, keys) == 2
