"""A Celery pool that runs deliveries on the hand-off's asyncio loop: no thread per job in flight.

The pool's side of the protocol told whole in `worker.handoff.Handoff`: `on_apply` (Celery's
hub thread) decodes the message and wakes the loop; on the loop up to `limit` attempts run at
once; each finished attempt goes back to the hub thread, which holds its outcome on the hand-off
and runs Celery's tracer (the task, its state, its events) and the ack, exactly as the solo pool
would, with the outcome ready. So acks still follow the recorded outcome (`acks_late`), prefetch
still bounds the jobs in flight (concurrency times the prefetch multiplier), and a SIGKILL
leaves the unacked messages to the broker's visibility timeout, as with any pool.

Hand-offs are batched both ways: one loop wake-up for every message the hub received in one
iteration, one hub wake-up for every attempt that finished in one loop iteration. The acks
themselves are Celery's own: the tracer's callback schedules each on the hub, which sends it in
its next iteration. The pool uses no kombu internals.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from billiard.einfo import ExceptionInfo  # type: ignore[import-untyped]
from billiard.exceptions import WorkerLostError  # type: ignore[import-untyped]
from celery import signals
from celery.concurrency.base import BasePool
from celery.exceptions import WorkerShutdown, WorkerTerminate
from kombu.serialization import loads

from eventq.messaging import PACK_TASK_NAME, TASK_NAME
from worker.handoff import Handoff

__all__ = ["AsyncioPool"]

log = logging.getLogger("eventq.pool")

_ACCEPT = {"application/json"}


@dataclass
class _Job:
    """One message between `on_apply` and its report to Celery."""

    target: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    callback: Callable[[Any], Any] | None
    task_id: str
    job: Any
    packed: bool  # an `eventq.create_marketing_events` message: many jobs
    result: Any = None  # the attempt's Outcome, or the exception it raised (Handoff.attempt)


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
        self._waiting: deque[_Job] = deque()  # loop thread only: received, not started yet
        self._running = 0  # loop thread only
        self._closing = False  # set on warm shutdown: start nothing new
        self._outbox: deque[_Job] = deque()
        self._loop_wake_pending = False
        self._report_pending = False
        self._reporter: ThreadPoolExecutor | None = None
        self._active = 0
        self._finished = threading.Event()
        self._hub: Any = None
        initargs = self.options.get("initargs") or (None, None)
        # as the solo pool does: this process is the one that runs tasks
        signals.worker_process_init.send(sender=initargs[1])

    def on_start(self) -> None:
        """Take this process's hand-off from the delivery task that owns it."""
        self.handoff: Handoff = self.app.tasks[TASK_NAME].handoff
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
    ) -> None:
        """Start the job's delivery on the loop and return at once."""
        if accept_callback:
            accept_callback(os.getpid(), time.monotonic())
        try:
            trace_args, job = _decode(tuple(args or ()))
        except Exception:  # let the tracer report a body it cannot decode, as Celery would
            trace_args, job = tuple(args or ()), None
        packed = trace_args[0] == PACK_TASK_NAME if trace_args else False
        item = _Job(target, trace_args, kwargs or {}, callback, str(trace_args[1]), job, packed)
        self._active += 1
        self._inbox.append(item)
        if not self._loop_wake_pending:
            self._loop_wake_pending = True
            self.handoff.loop.call_soon_threadsafe(self._start_pending)

    # -- loop thread -------------------------------------------------------------------------

    def _start_pending(self) -> None:
        self._loop_wake_pending = False  # before popping: a later append wakes us again
        while self._inbox:
            self._waiting.append(self._inbox.popleft())
        # at most `limit` attempts run at once; prefetched messages beyond it wait here, as
        # they would wait for a free thread in the threads pool
        while self._waiting and self._running < self.limit and not self._closing:
            self._running += 1
            task = self.handoff.loop.create_task(self._run(self._waiting.popleft()))
            self.handoff.keep(task)

    async def _run(self, item: _Job) -> None:
        # never raises
        item.result = await self.handoff.attempt(item.job, item.task_id, packed=item.packed)
        self._running -= 1
        self._start_pending()
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
        while (self._running > 0 or self._outbox) and time.monotonic() < deadline:
            self._finished.wait(0.1)
            self._finished.clear()
            self._report_finished()
        if self._reporter is not None:
            self._reporter.shutdown(wait=True)

    def _get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = super()._get_info()
        info.update({"in-flight": self._active, "processes": [os.getpid()]})
        return info
