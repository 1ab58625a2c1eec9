"""`eventq status`: one job's record, read from the job store."""

from __future__ import annotations

import redis.asyncio as aioredis

from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.records import JobStatus
from eventq.settings import Settings

__all__ = ["job_status"]


async def job_status(settings: Settings, job_id: str) -> JobStatus | None:
    """Return the status of one job, or None when it is unknown or expired."""
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStore(
            client,
            Keys(settings.key_prefix),
            ledger_ttl_s=settings.ledger_ttl_s,
            job_ttl_s=settings.job_ttl_s,
        )
        return await store.get(job_id)
    finally:
        await client.aclose()
