"""The hand-off between Celery's pool and the delivery task: one object per worker process."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from functools import partial
from typing import Any, TypeVar

from celery import Celery

from eventq.settings import Settings
from worker.delivery import Outcome, PackOutcome
from worker.runtime import Runtime

__all__ = ["Handoff"]

log = logging.getLogger("eventq.worker")
T = TypeVar("T")


class Handoff:
    """How one message's attempt runs on the delivery loop and its outcome reaches Celery.

    **Owner.** One per worker process, held by the delivery task's instance (Celery keeps one
    task instance per process): `worker.tasks.DeliveryTask.handoff` creates it on first use in
    a process (again after a fork) and the `worker_shutdown` signal closes it. The task's module
    starts it from the `worker_process_init` and `worker_ready` signals, so the schedule mover,
    the recovery sweep and the metrics port run before the first message, under every pool.

    **The loop.** `Handoff()` starts one event loop in a daemon thread (`eventq-loop`) and
    builds the delivery runtime on it (`worker.runtime.Runtime`: one aiohttp session, one
    batching Redis client, the limiter, the breaker, the credentials, and the mover, the sweep
    and the metrics port beside it). Every attempt of this process runs on that loop.

    **Starting an attempt (`worker.pool.AsyncioPool`, the default pool).** Celery's hub thread
    calls the pool's `on_apply` with the tracer and the message; the pool decodes the body once
    and wakes the loop (`loop.call_soon_threadsafe`, once per hub iteration however many
    messages arrived). On the loop, the pool starts up to its concurrency limit of attempts as
    tasks running `attempt(job, task_id)` (kept alive by `keep`); the rest wait in the pool,
    unstarted, as they would wait for a free thread in the threads pool.

    **The outcome to the tracer and the ack.** `attempt` returns once the outcome is recorded
    in Redis: an `Outcome`, or the exception the attempt raised (never raised on the loop). The
    loop hands the finished attempt back to the hub thread (`hub.call_soon`, once per loop
    iteration), where the pool calls `hold(task_id, result)` and then Celery's tracer. The
    tracer runs the task, whose `outcome(job, task_id)` returns the held result (or re-raises
    the held error) on that same thread; the task turns it into SUCCESS, `Retry` (parked in
    the retry schedule) or `DeadLettered`, and the tracer's callback schedules the ack on the
    hub (`acks_late`: a message is acked only after its outcome is in Redis).

    **Other pools (`-P threads`, `-P solo`, prefork).** Nothing is held: the task's `outcome`
    runs the attempt on the loop now and blocks its own thread until it is recorded.

    **Redis errors.** If our Redis state cannot be reached during an attempt
    (`redis.ConnectionError` / `TimeoutError`), the attempt did not finish: `outcome` re-raises
    the error and the task raises `Reject(requeue=True)`, so the message goes back to the
    queue unacked-as-done (or is redelivered after the visibility timeout if the broker is out
    of reach too). Any other error of an attempt reaches the tracer the same way and is a
    FAILURE in Flower.

    **Shutdown.** On a warm shutdown (SIGTERM) the pool starts nothing new, waits (up to 300 s)
    for the attempts in flight and reports each one, so their outcomes are recorded and their
    messages acked; messages received but not started stay unacked and go back to the queue
    when the broker connection closes. Then `worker_shutdown` calls `close`: the mover and the
    sweep stop, the HTTP session closes and the loop stops. A SIGKILL leaves the unacked
    messages to the broker's visibility timeout; a job's next copy finds its recorded state.
    """

    def __init__(self, settings: Settings, app: Celery) -> None:
        self._held: dict[str, Outcome | PackOutcome | BaseException] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="eventq-loop", daemon=True
        )
        self._thread.start()
        self.pid = os.getpid()
        # most jobs of packs in flight at once; the asyncio pool sets its own limit (`-c`)
        self.pack_concurrency = settings.concurrency
        self.runtime = Runtime(settings, app, self.call)
        log.info("delivery runtime started in pid %s", self.pid)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run `coro` on the loop and return its result (blocks the calling thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    # -- loop thread ---------------------------------------------------------------------------

    async def attempt(
        self, job: object, task_id: str, *, packed: bool = False
    ) -> Outcome | PackOutcome | BaseException:
        """Run one message's attempt (each job's of a pack); return its recorded outcome, or the
        error it raised (never raises)."""
        try:
            if packed:
                delivery = self.runtime.delivery
                return await delivery.run_pack(
                    job,
                    task_id,
                    concurrency=self.pack_concurrency,
                    alone=self.runtime.settings.concurrency,
                )
            return await self.runtime.delivery.run(job, task_id)
        except BaseException as error:  # the task re-raises it, as if the attempt ran there
            return error

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Keep a reference to an attempt's task until it finishes (the loop holds weak ones)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the thread that runs Celery's tracer --------------------------------------------------

    def hold(self, task_id: str, result: Outcome | PackOutcome | BaseException) -> None:
        """Hold an attempt that already ran on the loop, for the task's `outcome` to report."""
        self._held[task_id] = result

    def outcome(self, job: object, task_id: str) -> Outcome:
        """Return the outcome of a single message's attempt: the held one, or one run now.

        Raises the attempt's error (e.g. `redis.ConnectionError`) when it raised one.
        """
        held = self._take(job, task_id, packed=False)
        if not isinstance(held, Outcome):
            raise TypeError(f"message {task_id} was run as a pack")
        return held

    def pack_outcome(self, job: object, task_id: str) -> PackOutcome:
        """Return the outcome of a pack's attempts: the held one, or one run now (see outcome)."""
        held = self._take(job, task_id, packed=True)
        if not isinstance(held, PackOutcome):
            raise TypeError(f"message {task_id} was run as a single job")
        return held

    def _take(self, job: object, task_id: str, *, packed: bool) -> Outcome | PackOutcome:
        held = self._held.pop(task_id, None)
        if held is None:  # not the asyncio pool: run it on the loop now, blocking this thread
            held = self.call(self.attempt(job, task_id, packed=packed))
        if isinstance(held, BaseException):
            raise held
        return held

    def close(self) -> None:
        """Stop the mover and the sweep, close the session and stop the loop."""
        try:
            self.runtime.close(partial(self.call, timeout_s=5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
