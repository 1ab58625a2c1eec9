"""`eventq status`: one job's record (by its id or a unique prefix), read from the job-record
module."""

from __future__ import annotations

import redis

from eventq import jobs
from eventq.keys import Keys
from eventq.records import JobStatus
from eventq.settings import Settings
from eventq_cli.ids import resolve_id

__all__ = ["job_status", "resolve_job_id"]


def job_status(settings: Settings, job_id: str) -> JobStatus | None:
    """Return the status of one job, or None when it is unknown or expired."""
    with redis.Redis.from_url(settings.redis_url) as client:
        return jobs.job_status(client, Keys(settings.key_prefix), job_id)


def resolve_job_id(settings: Settings, given: str) -> str:
    """Return the job id that `given` (a whole id or a unique prefix) names.

    Raises UnknownId or AmbiguousId (eventq_cli.ids).
    """
    keys = Keys(settings.key_prefix)
    with redis.Redis.from_url(settings.redis_url) as client:
        return resolve_id(
            given,
            noun="job",
            exists=lambda job_id: jobs.job_state(client, keys, job_id) is not None,
            starting=lambda prefix, limit: jobs.job_ids_starting(client, keys, prefix, limit),
        )
