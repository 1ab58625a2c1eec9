"""A Celery pool that runs deliveries on the hand-off's asyncio loop: no thread per job in flight.

The pool's side of the protocol told whole in `worker.handoff.Handoff`: `on_apply` (Celery's
hub thread) decodes the message and wakes the loop; on the loop up to `limit` attempts run at
once, of which at most `EVENTQ_CONCURRENCY` are jobs sent alone (`Lanes`: the rest of `limit`
is the room for batch members, `worker.batcher.jobs_in_flight`); each finished attempt goes back
to the hub thread, which holds its outcome on the hand-off and runs Celery's tracer (the task,
its state, its events) and the ack, exactly as the solo pool would, with the outcome ready. So
acks still follow the recorded outcome (`acks_late`), prefetch still bounds the jobs in flight
(concurrency times the prefetch multiplier), and a SIGKILL leaves the unacked messages to the
broker's visibility timeout, as with any pool.

Hand-offs are batched both ways: one loop wake-up for every message the hub received in one
iteration, one hub wake-up for every attempt that finished in one loop iteration. The acks
themselves are Celery's own: the tracer's callback schedules each on the hub, which sends it in
its next iteration. The pool uses no kombu internals.

Cancelling (`kill_job`): when the broker connection is lost, Celery cancels every unacked
request (`worker_cancel_long_running_tasks_on_connection_loss`): it calls `terminate_job` with
the request's pid, then `terminate()` on what `on_apply` returned. All deliveries share this
process's pid, so the pool does the work in the second: `on_apply` returns the delivery, whose
`terminate()` cancels its asyncio task (or drops it if it has not started). A cancelled delivery
is not reported to the tracer, so its message stays unacked and comes back from the broker (or
the recovery sweep republishes its job), as after a SIGKILL. The pool logs one WARNING per
connection loss instead of Celery's line per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from billiard.einfo import ExceptionInfo  # type: ignore[import-untyped]
from billiard.exceptions import WorkerLostError  # type: ignore[import-untyped]
from celery import signals
from celery.concurrency.base import BasePool
from celery.exceptions import WorkerShutdown, WorkerTerminate
from kombu.serialization import loads

from eventq.messaging import PACK_TASK_NAME, TASK_NAME
from worker.batcher import is_batched
from worker.handoff import Handoff

__all__ = ["AsyncioPool", "Lanes"]

log = logging.getLogger("eventq.pool")

_ACCEPT = {"application/json"}
CANCEL_REPORT_DELAY_S = 0.2  # Celery cancels a connection's requests one by one: count them all
_CELERY_CONSUMER_LOG = "celery.worker.consumer.consumer"

T = TypeVar("T")


class Lanes(Generic[T]):
    """Jobs received and not started yet, in two lanes, and how many of each run.

    At most `limit` run in all (Celery's concurrency), and at most `alone_limit` of them are jobs
    sent alone (`EVENTQ_CONCURRENCY`): each of those holds a connection and may wait for a
    limiter slot, while batch members share one request. So the room a worker takes for full
    batches (`batcher.jobs_in_flight`) never lets more single deliveries run than configured;
    a single job beyond it waits here, unstarted, as it would wait for a free thread.
    """

    def __init__(self, limit: int, alone_limit: int) -> None:
        self.limit, self.alone_limit = limit, min(limit, alone_limit)
        self._waiting: dict[bool, deque[T]] = {False: deque(), True: deque()}
        self._running = {False: 0, True: 0}

    @property
    def running(self) -> int:
        """Return how many started jobs have not finished."""
        return self._running[False] + self._running[True]

    def add(self, item: T, *, batched: bool) -> None:
        """Queue a received job in its lane."""
        self._waiting[batched].append(item)

    def take(self) -> list[tuple[T, bool]]:
        """Return the jobs to start now, each with its lane, and count them as running."""
        started: list[tuple[T, bool]] = []
        for batched in (True, False):
            queue = self._waiting[batched]
            while queue and self.running < self.limit:
                if not batched and self._running[False] >= self.alone_limit:
                    break
                self._running[batched] += 1
                started.append((queue.popleft(), batched))
        return started

    def remove(self, item: T) -> bool:
        """Take a job that has not started out of its lane; False if it is not waiting."""
        for queue in self._waiting.values():
            if item in queue:
                queue.remove(item)
                return True
        return False

    def finished(self, *, batched: bool) -> None:
        """Count a started job of that lane as finished."""
        self._running[batched] -= 1


class _OneLinePerLoss(logging.Filter):
    """Drop Celery's line per cancelled request: the pool logs one line per connection loss."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task %s cannot be acknowledged after a connection")


@dataclass(eq=False)  # compared by identity: Celery holds a weak reference to it
class _Job:
    """One message between `on_apply` and its report to Celery."""

    target: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    callback: Callable[[Any], Any] | None
    task_id: str
    job: Any
    cancel: Callable[[_Job], None]
    packed: bool  # an `eventq.create_marketing_events` message: many jobs
    result: Any = None  # the attempt's Outcome, or the exception it raised (Handoff.attempt)
    task: asyncio.Task[None] | None = None  # loop thread only: once started
    cancelled: bool = False  # loop thread only
    batched: bool = False  # joins a batch upsert (worker.batcher.is_batched)

    def terminate(self, signal: Any = None) -> None:
        """Cancel this delivery (Celery's `Request.cancel` and `terminate` call it)."""
        self.cancel(self)


def _decode(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    """Return the tracer's arguments with the body decoded once, and the job it carries."""
    task_name, task_id, request, body, content_type, content_encoding = args
    if content_type:
        body = loads(body, content_type, content_encoding, accept=_ACCEPT)  # type: ignore[no-untyped-call]
    positional, named, _ = body
    job = positional[0] if positional else named.get("job", named.get("jobs"))
    return (task_name, task_id, request, body, None, None), job


class AsyncioPool(BasePool):  # type: ignore[misc]
    """Run eventq's delivery tasks (single and packed) on the hand-off's loop (`worker.handoff`)."""

    body_can_be_buffer = True
    signal_safe = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox: deque[_Job] = deque()  # hub thread → loop thread
        self._lanes: Lanes[_Job] = Lanes(self.limit, self.limit)  # loop thread only: set on start
        self._closing = False  # set on warm shutdown: start nothing new
        self._outbox: deque[_Job] = deque()
        self._loop_wake_pending = False
        self._report_pending = False
        self._reporter: ThreadPoolExecutor | None = None
        self._active = 0
        self._finished = threading.Event()
        self._hub: Any = None
        self._cancelled_count = 0  # loop thread only: since the last report
        logging.getLogger(_CELERY_CONSUMER_LOG).addFilter(_OneLinePerLoss())
        initargs = self.options.get("initargs") or (None, None)
        # as the solo pool does: this process is the one that runs tasks
        signals.worker_process_init.send(sender=initargs[1])

    def on_start(self) -> None:
        """Take this process's hand-off from the delivery task that owns it."""
        self.handoff: Handoff = self.app.tasks[TASK_NAME].handoff
        self._settings = self.handoff.runtime.settings
        self._lanes = Lanes(self.limit, self._settings.concurrency)
        # a pack is one message here: its jobs share this same limit on the loop
        self.handoff.pack_concurrency = self.limit

    def register_with_event_loop(self, loop: Any) -> None:
        """Remember the hub: finished attempts are reported from its thread."""
        self._hub = loop

    def on_apply(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Callable[[Any], Any] | None = None,
        accept_callback: Callable[..., Any] | None = None,
        **_: Any,
    ) -> _Job:
        """Start the job's delivery on the loop and return at once; returns the delivery, which
        Celery keeps to cancel it (`terminate`)."""
        if accept_callback:
            accept_callback(os.getpid(), time.monotonic())
        try:
            trace_args, job = _decode(tuple(args or ()))
        except Exception:  # let the tracer report a body it cannot decode, as Celery would
            trace_args, job = tuple(args or ()), None
        packed = trace_args[0] == PACK_TASK_NAME if trace_args else False
        item = _Job(
            target,
            trace_args,
            kwargs or {},
            callback,
            str(trace_args[1]),
            job,
            self._cancel_soon,
            packed,
        )
        self._active += 1
        self._inbox.append(item)
        if not self._loop_wake_pending:
            self._loop_wake_pending = True
            self.handoff.loop.call_soon_threadsafe(self._start_pending)
        return item

    def terminate_job(self, pid: int, signal: Any = None) -> None:
        """Celery's `kill_job`: never signal this process, which runs every delivery; the one
        delivery to stop is cancelled by its own `terminate()`, which Celery calls next."""

    def _cancel_soon(self, item: _Job) -> None:
        self.handoff.loop.call_soon_threadsafe(self._cancel, item)

    # -- loop thread -------------------------------------------------------------------------

    def _start_pending(self) -> None:
        self._loop_wake_pending = False  # before popping: a later append wakes us again
        while self._inbox:
            item = self._inbox.popleft()
            item.batched = is_batched(self._settings, item.job)
            self._lanes.add(item, batched=item.batched)
        # at most `limit` attempts run at once, at most EVENTQ_CONCURRENCY of them sent alone;
        # prefetched messages beyond that wait here, as they would wait for a free thread
        while not self._closing and (started := self._lanes.take()):
            for item, _ in started:
                if item.cancelled:  # before it started
                    self._lanes.finished(batched=item.batched)
                    self._finish(item)
                    continue
                item.task = self.handoff.loop.create_task(self._run(item))
                self.handoff.keep(item.task)

    def _cancel(self, item: _Job) -> None:
        if item.cancelled or item.result is not None:
            return  # cancelled already, or finished: its report is on its way
        item.cancelled = True
        self._cancelled_count += 1
        if self._cancelled_count == 1:
            self.handoff.loop.call_later(CANCEL_REPORT_DELAY_S, self._log_cancelled)
        if item.task is not None:
            item.task.cancel()  # _run reports it, as cancelled
        elif self._lanes.remove(item):
            self._finish(item)
        # else still in the inbox: _start_pending finishes it when it takes it

    def _log_cancelled(self) -> None:
        count, self._cancelled_count = self._cancelled_count, 0
        log.warning(
            "broker connection lost: %d deliveries in flight cancelled; their messages stay "
            "unacked and come back when the broker is reachable",
            count,
        )

    async def _run(self, item: _Job) -> None:
        # never raises
        item.result = await self.handoff.attempt(item.job, item.task_id, packed=item.packed)
        self._lanes.finished(batched=item.batched)
        self._start_pending()
        self._finish(item)

    def _finish(self, item: _Job) -> None:
        self._outbox.append(item)
        self._finished.set()
        if not self._report_pending:
            self._report_pending = True
            if self._hub is not None:
                self._hub.call_soon(self._report_finished)
            else:  # a consumer without kombu's event loop: report from a thread of our own
                self._fallback_reporter().submit(self._report_finished)

    def _fallback_reporter(self) -> ThreadPoolExecutor:
        if self._reporter is None:
            self._reporter = ThreadPoolExecutor(1, thread_name_prefix="eventq-report")
        return self._reporter

    # -- hub thread --------------------------------------------------------------------------

    def _report_finished(self) -> None:
        self._report_pending = False  # before draining: a later finish wakes us again
        while self._outbox:
            self._report(self._outbox.popleft())

    def _report(self, item: _Job) -> None:
        if item.cancelled:  # Celery has forgotten the request: no tracer, no ack
            self._active -= 1
            return
        self.handoff.hold(item.task_id, item.result)
        try:
            ret = item.target(*item.args, **item.kwargs)
        except (WorkerShutdown, WorkerTerminate):
            raise
        except Exception:
            log.exception("the tracer failed for %s", item.task_id)
            return
        except BaseException as exc:
            try:
                raise WorkerLostError(repr(exc)).with_traceback(sys.exc_info()[2]) from exc
            except WorkerLostError:
                if item.callback:
                    item.callback(ExceptionInfo())
            return
        finally:
            self._active -= 1
        if item.callback:
            item.callback(ret)

    def on_stop(self) -> None:
        """Wait (up to 300 s) for the attempts in flight and report each one.

        Messages received but not started stay unacked: the broker connection gives them back
        to the queue when it closes, as it does for the threads pool's queued work.
        """
        self._closing = True
        deadline = time.monotonic() + 300
        while (self._lanes.running > 0 or self._outbox) and time.monotonic() < deadline:
            self._finished.wait(0.1)
            self._finished.clear()
            self._report_finished()
        if self._reporter is not None:
            self._reporter.shutdown(wait=True)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update({"in-flight": self._active, "processes": [os.getpid()]})
        return info
