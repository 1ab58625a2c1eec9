"""The Celery side shared by producers and workers: app configuration and how a job is sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.entity import Queue

from eventq.callbacks import CALLBACK_TASK_NAME, Callback
from eventq.redis_conn import broker
from eventq.schema import JobEnvelope
from eventq.settings import Settings

__all__ = [
    "PACK_TASK_NAME",
    "TASK_NAME",
    "callback_worker_argv",
    "celery_argv",
    "make_celery",
    "pack_summary",
    "queue_for",
    "send_callback",
    "send_job",
    "send_pack",
    "worker_argv",
]

TASK_NAME = "eventq.create_marketing_event"
# one message, many recorded jobs: what a producer handing over many events at once publishes
PACK_TASK_NAME = "eventq.create_marketing_events"


def _transport_options(settings: Settings) -> dict[str, Any]:
    restore_every_s = max(1, min(10, settings.visibility_timeout_s // 4))
    return {
        **broker(settings).transport_options,
        # an unacked job (its worker died) is handed out again after this long
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": restore_every_s,
        "unacked_restore_throttle": 1,
        # live queue strictly before the bulk queue: replays never starve live traffic
        "queue_order_strategy": "priority",
    }


def make_celery(settings: Settings, name: str = "eventq") -> Celery:
    """Return a Celery app configured for eventq (broker, queues, acks, events, prefetch).

    A process that consumes (the worker, Flower) calls `eventq.redis_transport.install()` first,
    so that its broker connection survives a lost or moved Redis.
    """
    connection = broker(settings)
    app = Celery(name, broker=connection.url)
    app.conf.update(
        broker_use_ssl=connection.use_ssl,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        # Three events per task cost a worker ~40% of its throughput (bench/RESULTS.md); Flower
        # switches them on (`enable_events`) while it watches, `-E` forces them on.
        worker_send_task_events=False,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        task_queues=[Queue(settings.queue), Queue(settings.bulk_queue)],
        task_default_queue=settings.queue,
        task_routes={
            TASK_NAME: {"queue": settings.queue},
            CALLBACK_TASK_NAME: {"queue": settings.callback_queue},
            PACK_TASK_NAME: {"queue": settings.queue},
        },
        enable_utc=True,
    )
    return app


def queue_for(envelope: JobEnvelope, settings: Settings) -> str:
    """Return the queue a job's message goes to: bulk work waits behind live traffic."""
    return settings.bulk_queue if envelope.priority == "bulk" else settings.queue


def send_job(
    app: Celery,
    envelope: JobEnvelope,
    settings: Settings,
    *,
    producer: Any = None,
    declare: bool = True,
) -> None:
    """Publish one job as `eventq.create_marketing_event`, summarised for Flower.

    `producer` reuses a held kombu producer (batch publishing); `declare=False` skips declaring
    the queue again (a batch declares it once).
    """
    options: dict[str, Any] = {} if declare else {"declare": []}
    app.send_task(
        TASK_NAME,
        args=[envelope.to_message()],
        queue=queue_for(envelope, settings),
        argsrepr=envelope.summary(),
        kwargsrepr="{}",
        producer=producer,
        **options,
    )


def pack_summary(envelopes: Sequence[JobEnvelope]) -> str:
    """Return a pack's summary for Flower: `3 events: acct/ext-1 … acct/ext-3`."""
    first, last = envelopes[0].event, envelopes[-1].event
    head = f"{len(envelopes)} events: {first.externalAccountId}/{first.externalEventId}"
    if len(envelopes) == 1:
        return head
    return f"{head} … {last.externalAccountId}/{last.externalEventId}"


def send_pack(
    app: Celery,
    envelopes: Sequence[JobEnvelope],
    settings: Settings,
    *,
    producer: Any = None,
    declare: bool = True,
) -> None:
    """Publish recorded jobs of one queue as one `eventq.create_marketing_events` message.

    The message names each job and the attempt it carries (`[jobId, attempt]`); the worker
    reads each envelope from its job record, so the event is stored once. `producer` and
    `declare` as for `send_job`.
    """
    options: dict[str, Any] = {} if declare else {"declare": []}
    app.send_task(
        PACK_TASK_NAME,
        args=[[[envelope.jobId, envelope.attempt] for envelope in envelopes]],
        queue=queue_for(envelopes[0], settings),
        argsrepr=pack_summary(envelopes),
        kwargsrepr="{}",
        producer=producer,
        **options,
    )


def send_callback(app: Celery, callback: Callback, settings: Settings) -> None:
    """Publish one callback as `eventq.send_callback` on the callback queue (no secret in it)."""
    outcome = callback.outcome
    app.send_task(
        CALLBACK_TASK_NAME,
        args=[callback.model_dump(mode="json")],
        queue=settings.callback_queue,
        argsrepr=f"job {outcome.jobId} {outcome.state}",
        kwargsrepr="{}",
    )


def celery_argv(command: str, *args: str) -> list[str]:
    """Return a `celery` command line (after `python -m`) on eventq's app: `worker`, `flower`…"""
    return ["celery", "-A", "worker.celery_app", command, *args]


def worker_argv(settings: Settings, *extra: str) -> list[str]:
    """Return the `celery worker` command line (after `python -m`) for both queues, live first."""
    queues = f"{settings.queue},{settings.bulk_queue}"
    return celery_argv("worker", "-Q", queues, "--loglevel", "INFO", *extra)


def callback_worker_argv(settings: Settings, *extra: str) -> list[str]:
    """Return the callback worker's command line (after `python -m`): its own app and queue."""
    return [
        *("celery", "-A", "worker.callback_app", "worker", "-Q", settings.callback_queue),
        *("-P", "threads", "--loglevel", "INFO", *extra),
    ]
