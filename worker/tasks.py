"""The Celery task, a thin view: take the message's outcome from the hand-off, report it.

Flower sees SUCCESS (delivered or nothing to do), RETRY (parked in the retry schedule) or
FAILURE (dead-lettered); the job's own status and the DLQ hold the details. A pack
(`eventq.create_marketing_events`, many recorded jobs in one message) is SUCCESS with how many of
its jobs ended each way: each job's own outcome is in its record. The whole protocol
between the pool, this task and Celery is told in `worker.handoff.Handoff`.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import Reject, Retry

from eventq.errors import JobEnded
from eventq.messaging import PACK_TASK_NAME, TASK_NAME
from worker.celery_app import app, settings
from worker.handoff import Handoff

__all__ = [
    "DeadLettered",
    "DeliveryTask",
    "Parked",
    "create_marketing_event",
    "create_marketing_events",
]

log = logging.getLogger("eventq.task")


class _RejectWithoutTraceback(logging.Filter):
    """Celery logs a rejected task at WARNING with its traceback (as `exc_info` and in its `data`
    field); ours is always the one `raise Reject` below, during a Redis outage that the consumer
    and the pool already announce, so the trace line keeps its sentence at INFO, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], Reject):
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
            data = getattr(record, "data", None)
            if isinstance(data, dict):
                record.data = {k: v for k, v in data.items() if k != "traceback"}
        return True


logging.getLogger("celery.app.trace").addFilter(_RejectWithoutTraceback())


class Parked(JobEnded):
    """The job waits in the retry schedule for its next attempt; the message says why."""


class DeadLettered(JobEnded):
    """The job went to the dead-letter queue; the message says why (never a credential)."""


class DeliveryTask(Task):  # type: ignore[misc]
    """The delivery task's class: its instance (one per process) owns the process's hand-off."""

    _handoff: Handoff | None = None
    _handoff_lock = threading.Lock()

    @property
    def handoff(self) -> Handoff:
        """Return this process's hand-off, starting it on first use (and again after a fork)."""
        with self._handoff_lock:
            if self._handoff is None or self._handoff.pid != os.getpid():
                self._handoff = Handoff(settings, app)
            return self._handoff

    def close_handoff(self) -> None:
        """Close this process's hand-off if it was started here."""
        with self._handoff_lock:
            if self._handoff is not None and self._handoff.pid == os.getpid():
                self._handoff.close()
            self._handoff = None


@app.task(
    base=DeliveryTask,
    name=TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(DeadLettered,),
)
def create_marketing_event(
    self: DeliveryTask, job: Any = None, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Deliver one job; return its outcome, or raise Retry / DeadLettered for Flower."""
    try:
        outcome = self.handoff.outcome(job, self.request.id)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise _requeue(error) from None
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


@app.task(
    name=PACK_TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def create_marketing_events(
    self: Task, jobs: Any = None, *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """Deliver each job of a pack; return how many ended each way (`{"events": 50, ...}`).

    Never Retry nor FAILURE for the whole message: each job's retry waits in the retry
    schedule as that job alone, each dead-lettered job is in the DLQ alone, and `eventq status`
    tells each job's story. The pack runs on the single task's hand-off (one per process).
    """
    try:
        outcome = create_marketing_event.handoff.pack_outcome(jobs, self.request.id)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise _requeue(error) from None
    return {"events": len(outcome.outcomes), **outcome.counts()}


def _requeue(error: Exception) -> Reject:
    """Return the Reject that requeues a message whose attempt could not reach our Redis state."""
    # our state is out of reach, so the attempt did not finish: the message must not be acked
    # as done; requeued now (or redelivered after the visibility timeout)
    # INFO: one per job in flight; the outage itself is announced once (consumer, pool)
    log.info("Redis unavailable, message requeued: %s", type(error).__name__)
    return Reject(f"Redis unavailable: {type(error).__name__}", requeue=True)


@signals.worker_process_init.connect
@signals.worker_ready.connect
def _start_handoff(**_: Any) -> None:
    # at once, not at the first message: parked jobs must come back, and the sweep must run
    create_marketing_event.handoff  # noqa: B018


@signals.worker_shutdown.connect
def _close_handoff(**_: Any) -> None:
    create_marketing_event.close_handoff()
