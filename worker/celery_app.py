"""The Celery app: `celery -A worker.celery_app worker` runs eventq's delivery workers."""

from __future__ import annotations

from typing import Any

from celery import signals

from eventq import redis_transport
from eventq.logs import configure_logging
from eventq.messaging import make_celery
from eventq.settings import get_settings
from worker.batcher import jobs_in_flight

__all__ = ["app"]

# the broker connection survives a Redis restart or failover (a lost connection, READONLY)
redis_transport.install()
settings = get_settings()
app = make_celery(settings, "eventq")
app.conf.update(
    include=["worker.tasks"],
    # deliveries run on the hand-off's event loop, not one thread each (worker.handoff,
    # bench/RESULTS.md)
    worker_pool="worker.pool:AsyncioPool",
    # requests in flight, plus room for two full batches where bulk jobs are batched
    worker_concurrency=jobs_in_flight(settings),
    task_queues=app.conf.task_queues,
)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging(settings)
