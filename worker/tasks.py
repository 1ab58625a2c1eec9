"""The Celery task, a thin view: hand the message to the delivery runtime, report the outcome.

Flower sees SUCCESS (delivered or nothing to do), RETRY (parked in the retry schedule) or
FAILURE (dead-lettered); the job's own status and the DLQ hold the details.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task
from celery.exceptions import Reject, Retry

from eventq.errors import JobEnded
from eventq.messaging import TASK_NAME
from worker.celery_app import app, settings
from worker.runtime import get_runtime

__all__ = ["DeadLettered", "Parked", "create_marketing_event"]

log = logging.getLogger("eventq.task")


class Parked(JobEnded):
    """The job waits in the retry schedule for its next attempt; the message says why."""


class DeadLettered(JobEnded):
    """The job went to the dead-letter queue; the message says why (never a credential)."""


@app.task(
    name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, throws=(DeadLettered,)
)
def create_marketing_event(
    self: Task, job: Any = None, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Deliver one job; return its outcome, or raise Retry / DeadLettered for Flower."""
    try:
        outcome = get_runtime(settings, app).deliver(job, self.request.id)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        # our state is out of reach, so the attempt did not finish: the message must not be
        # acked as done; requeued now (or redelivered after the visibility timeout)
        log.warning("Redis unavailable, message requeued: %s", type(error).__name__)
        raise Reject(f"Redis unavailable: {type(error).__name__}", requeue=True) from None
    # the attempt's own line is eventq.attempt's (worker/delivery.py), Celery's trace logs the
    # result: this one is for debugging the task wrapper only
    log.debug(
        "attempt finished",
        extra={"jobId": outcome.job_id, "outcome": outcome.kind, "detail": outcome.detail},
    )
    if outcome.kind == "retrying":
        when = datetime.fromtimestamp(outcome.next_attempt_at or 0, UTC)
        raise Retry(exc=Parked(outcome.detail), when=when)
    if outcome.kind == "dead_lettered":
        raise DeadLettered(outcome.detail)
    return {"jobId": outcome.job_id, "outcome": outcome.kind, "objectId": outcome.object_id}
