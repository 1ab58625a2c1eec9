"""What the outcome stream costs: Redis memory per entry, and `JobStore.mark_delivered` with and
without its XADD (medians over N calls, rounds alternated). Uses EVENTQ_REDIS_URL under a
throwaway key prefix, deleted afterwards: `python scripts/outcome_stream_cost.py [N]`."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis

from eventq import jobs
from eventq.jobs import JobStore, create_job
from eventq.keys import Keys
from eventq.outcomes import delivered_outcome, queue_outcome
from eventq.records import AttemptRecord
from eventq.schema import JobEnvelope, MarketingEvent
from eventq.settings import get_settings

URL = get_settings().redis_url


def _envelope(n: int) -> JobEnvelope:
    event = MarketingEvent(
        externalAccountId="acct-1",
        externalEventId=f"evt-{n}",
        eventName=f"Webinar {n}",
        eventOrganizer="Acme",
    )
    return JobEnvelope(event=event)


def _drop(client: redis.Redis, keys: Keys) -> None:
    for key in client.scan_iter(f"{keys.prefix}:*", count=1000):
        client.delete(key)


def bytes_per_entry(client: redis.Redis, entries: int = 10_000) -> float:
    """Return the stream's MEMORY USAGE divided by its entries."""
    keys = Keys(f"cost-{uuid.uuid4().hex[:8]}")
    with client.pipeline(transaction=False) as pipe:
        for n in range(entries):
            outcome = delivered_outcome(_envelope(n), str(10**9 + n), attempt=1, at=time.time())
            queue_outcome(pipe, keys, outcome, callback_url=None, max_len=10 * entries)
        pipe.execute()
    used = int(client.memory_usage(keys.outcomes, samples=0) or 0)
    _drop(client, keys)
    return used / entries


async def median_us(client: redis.Redis, calls: int, with_xadd: bool) -> float:
    """Return the median time of one `mark_delivered` (the transaction that ends a job)."""
    keys = Keys(f"cost-{uuid.uuid4().hex[:8]}")
    store_client = aioredis.Redis.from_url(URL)
    store = JobStore(store_client, keys, ledger_ttl_s=60, job_ttl_s=60)
    envelopes = [_envelope(n) for n in range(calls)]
    for envelope in envelopes:
        create_job(client, keys, envelope, dedupe_ttl_s=60)
    original: Any = jobs.queue_outcome
    if not with_xadd:
        jobs.queue_outcome = lambda *_, **__: None  # type: ignore[assignment]
    times = []
    try:
        for envelope in envelopes:
            record = AttemptRecord(attempt=1, at=time.time(), outcome="delivered", httpStatus=200)
            started = time.perf_counter()
            await store.mark_delivered(envelope, "123", record, attempts=1)
            times.append(time.perf_counter() - started)
    finally:
        jobs.queue_outcome = original
        await store_client.aclose()
        _drop(client, keys)
    return statistics.median(times) * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    client = redis.Redis.from_url(URL)
    print(f"outcome stream: {bytes_per_entry(client):.0f} bytes per entry (MEMORY USAGE)")
    for _ in range(3):
        for with_xadd in (False, True):
            us = asyncio.run(median_us(client, calls, with_xadd))
            print(f"mark_delivered median {'with' if with_xadd else 'without'} XADD: {us:.0f} us")


if __name__ == "__main__":
    main()
