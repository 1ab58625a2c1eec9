"""The recovery sweep: republish jobs whose message was lost, so an accepted job is never lost.

A job out of the retry schedule and not finished is watched in `keys.unfinished` (score: its
last progress). A message can vanish without the job finishing: Redis killed between the
broker's pop and its unacked record, or the last second of writes lost with `appendfsync
everysec`. When a job makes no progress for `stale_after_s`, holds no lock and its queue is
empty (so its message is not merely waiting behind others), one worker process republishes it
with the next attempt number, which turns any surviving old copy into a no-op.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import redis

from eventq.jobs import record_republished, recovery_view
from eventq.keys import Keys
from eventq.schema import JobEnvelope
from worker.background import Periodic

__all__ = ["RecoverySweep"]

log = logging.getLogger("eventq.recovery")


class RecoverySweep(Periodic):
    """Finds and republishes stuck jobs, in a daemon thread."""

    name = "eventq-recovery"

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        publish: Callable[[JobEnvelope], None],
        queue_depth: Callable[[JobEnvelope], int | None],
        *,
        stale_after_s: float,
        batch: int = 200,
    ) -> None:
        self._redis, self._keys = client, keys
        self._publish, self._queue_depth = publish, queue_depth
        self._stale_after_s, self._batch = stale_after_s, batch
        super().__init__(max(1.0, min(10.0, stale_after_s / 4)), log)

    def step(self) -> None:
        """Run one sweep."""
        self.sweep()

    def sweep(self) -> int:
        """Republish every stuck job found now (one process per interval); returns how many."""
        lock_ms = int(self._interval_s * 1000)
        if not self._redis.set(self._keys.sweep_lock, 1, nx=True, px=lock_ms):
            return 0
        cutoff = time.time() - self._stale_after_s
        ids = cast(
            list[bytes],
            self._redis.zrangebyscore(
                self._keys.unfinished, "-inf", cutoff, start=0, num=self._batch
            ),
        )
        return sum(self._recover(job_id.decode()) for job_id in ids)

    def _recover(self, job_id: str) -> bool:
        job = recovery_view(self._redis, self._keys, job_id)
        if job.finished or job.scheduled:
            self._redis.zrem(self._keys.unfinished, job_id)  # finished, expired or parked
            return False
        if job.locked or job.envelope is None:
            return self._look_again_later(job_id)
        envelope, state = job.envelope, cast(str, job.state)
        depth = self._queue_depth(envelope)
        if depth is None and state != "in_progress":
            # cannot see the queue (AMQP): its message may be waiting there
            return self._look_again_later(job_id)
        if depth:
            return self._look_again_later(job_id)  # a backlog: it may be waiting behind others
        return self._republish(job_id, envelope.next_attempt(), state)

    def _look_again_later(self, job_id: str) -> bool:
        # a fresh score: the next sweeps reach the stale jobs behind this one, and this one
        # comes back after another `stale_after_s`
        self._redis.zadd(self._keys.unfinished, {job_id: time.time()})
        return False

    def _republish(self, job_id: str, envelope: JobEnvelope, state: str) -> bool:
        record_republished(self._redis, self._keys, envelope)
        self._publish(envelope)
        log.warning(
            "job %s (%s) made no progress for %.0fs: its message was lost, republished",
            job_id,
            state,
            self._stale_after_s,
        )
        return True
