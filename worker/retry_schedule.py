"""The retry schedule: jobs waiting for their next attempt sit in a Redis sorted set.

Every worker process runs a `ScheduleMover` that leases due jobs (atomically, so no job is moved
twice), publishes them back to their Celery queue, and only then confirms; a mover that dies
mid-way leaves its lease to expire and another mover publishes the jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from eventq.jobs import claim_due, confirm_moved
from eventq.keys import Keys
from eventq.schema import JobEnvelope
from worker.background import Periodic

__all__ = ["ScheduleMover"]

log = logging.getLogger("eventq.schedule")


class ScheduleMover(Periodic):
    """Moves due jobs from the retry schedule to the queue, in a daemon thread."""

    name = "eventq-schedule"

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        publish: Callable[[JobEnvelope], None],
        *,
        interval_s: float = 0.2,
        lease_s: float = 30.0,
        batch: int = 500,
    ) -> None:
        self._redis, self._keys, self._publish = client, keys, publish
        super().__init__(interval_s, log)
        self._lease_s, self._batch = lease_s, batch

    def step(self) -> None:
        """Move everything due, a batch at a time."""
        while self.move_due() >= self._batch:
            pass

    def move_due(self) -> int:
        """Publish every job due now; returns how many were moved."""
        now = time.time()
        # one decimal text for the lease, so confirm compares exactly what claim stored
        lease = f"{now + self._lease_s:.3f}"
        due = claim_due(self._redis, self._keys, now=now, lease=lease, limit=self._batch)
        moved = [job_id for job_id, raw in due if self._publish_one(job_id, raw)]
        confirm_moved(self._redis, self._keys, lease=lease, now=now, job_ids=moved)
        return len(moved)

    def _publish_one(self, job_id: str, raw: str) -> bool:
        if not raw:
            # the job record expired or was purged: nothing to publish, drop it from the schedule
            return True
        try:
            self._publish(JobEnvelope.model_validate_json(raw))
        except Exception:  # the lease expires and a mover tries again
            log.exception("could not publish scheduled job %r", job_id)
            return False
        return True
