"""The callback worker's Celery app: `celery -A worker.callback_app worker -Q eventq-callbacks`.

Its own processes, app and queue: a slow or dead callback receiver holds only these, never a
delivery worker. Besides running `eventq.send_callback`, the worker runs the dispatcher that
turns outcome-stream entries with a `callbackUrl` into callback tasks (`worker.callbacks`).
"""

from __future__ import annotations

from typing import Any

from celery import signals
from kombu.entity import Queue

from eventq.logs import configure_logging
from eventq.messaging import make_celery
from eventq.settings import get_settings

__all__ = ["app"]

settings = get_settings()
app = make_celery(settings, "eventq-callbacks")
app.conf.update(
    include=["worker.callbacks"],
    worker_pool="threads",
    worker_concurrency=8,
    task_queues=[Queue(settings.callback_queue)],
    task_default_queue=settings.callback_queue,
)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging(settings)
