"""`eventq status`: one job's record, read from the job-record module."""

from __future__ import annotations

import redis

from eventq import jobs
from eventq.keys import Keys
from eventq.records import JobStatus
from eventq.settings import Settings

__all__ = ["job_status"]


def job_status(settings: Settings, job_id: str) -> JobStatus | None:
    """Return the status of one job, or None when it is unknown or expired."""
    with redis.Redis.from_url(settings.redis_url) as client:
        return jobs.job_status(client, Keys(settings.key_prefix), job_id)
