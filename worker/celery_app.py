"""The Celery app: `celery -A worker.celery_app worker` runs eventq's delivery workers."""

from __future__ import annotations

from typing import Any

from celery import signals

from eventq.logs import configure_logging
from eventq.messaging import make_celery
from eventq.settings import get_settings
from worker.runtime import get_runtime, shutdown_runtime

__all__ = ["app"]

settings = get_settings()
app = make_celery(settings, "eventq")
app.conf.update(
    include=["worker.tasks"],
    # deliveries run on the runtime's event loop, not one thread each (bench/RESULTS.md)
    worker_pool="worker.pool:AsyncioPool",
    worker_concurrency=settings.concurrency,
    task_queues=app.conf.task_queues,
)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging(settings)


@signals.worker_ready.connect
def _start_runtime(**_: Any) -> None:
    # start the schedule mover at once, not at the first job: parked jobs must come back
    get_runtime(settings, app)


@signals.worker_process_init.connect
def _start_child_runtime(**_: Any) -> None:
    get_runtime(settings, app)


@signals.worker_shutdown.connect
def _stop_runtime(**_: Any) -> None:
    shutdown_runtime()
