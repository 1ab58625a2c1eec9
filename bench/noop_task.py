"""The Celery no-op task: what the broker and Celery allow, with nothing else in the way.

Run as `celery -A bench.noop_task worker`; the broker and queue come from `BENCH_BROKER_URL`
and `BENCH_QUEUE`. Celery's defaults otherwise (prefork pool, prefetch multiplier 4, early ack).
"""

from __future__ import annotations

import os

from celery import Celery

__all__ = ["NOOP_TASK", "app", "noop"]

NOOP_TASK = "bench.noop"

app = Celery("bench-noop", broker=os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench-noop"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name=NOOP_TASK)
def noop(*_: object) -> None:
    """Do nothing: the message's cost is all Celery's and the broker's."""
