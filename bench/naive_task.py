"""The naive baseline: the Celery task a user writes without eventq.

`requests.post` per event, `autoretry_for` with Celery's exponential backoff on network errors,
429 and 5xx, as in Celery's documentation; no shared limiter, no breaker, no session reuse.
Run as `celery -A bench.naive_task worker`; `BENCH_BROKER_URL`, `BENCH_QUEUE`,
`BENCH_HUBSPOT_BASE_URL` and `BENCH_HUBSPOT_TOKEN` configure it.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

__all__ = ["NAIVE_TASK", "PermanentFailure", "RetryableStatus", "app", "create_marketing_event"]

NAIVE_TASK = "bench.naive_create_marketing_event"
EVENTS_URL = (
    os.environ.get("BENCH_HUBSPOT_BASE_URL", "https://api.hubapi.com").rstrip("/")
    + "/marketing/v3/marketing-events/events"
)

app = Celery("bench-naive", broker=os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("BENCH_QUEUE", "bench-naive"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


class RetryableStatus(requests.HTTPError):
    """HubSpot answered 429 or 5xx: try again later."""


class PermanentFailure(Exception):
    """HubSpot rejected the event (another 4xx): retrying cannot help."""


@app.task(
    name=NAIVE_TASK,
    autoretry_for=(requests.RequestException,),
    retry_backoff=True,
    retry_jitter=True,
    retry_kwargs={"max_retries": 5},
)
def create_marketing_event(event: dict[str, Any]) -> str:
    """POST one event to HubSpot; return its objectId. Retries per `autoretry_for`."""
    token = os.environ.get("BENCH_HUBSPOT_TOKEN", "")
    response = requests.post(
        EVENTS_URL, json=event, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryableStatus(f"HubSpot answered {response.status_code}", response=response)
    if response.status_code >= 400:
        raise PermanentFailure(f"HubSpot answered {response.status_code}")
    return str(response.json()["objectId"])
