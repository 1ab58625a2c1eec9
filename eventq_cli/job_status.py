"""`eventq status`: one job's record, read from the job-record module."""

from __future__ import annotations

from eventq import jobs
from eventq.keys import Keys
from eventq.records import JobStatus
from eventq.redis_conn import sync_client
from eventq.settings import Settings

__all__ = ["job_status"]


def job_status(settings: Settings, job_id: str) -> JobStatus | None:
    """Return the status of one job, or None when it is unknown or expired."""
    with sync_client(settings) as client:
        return jobs.job_status(client, Keys(settings.key_prefix), job_id)
