"""Helpers for integration tests: job status, spec validation, raw Celery messages."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import redis
from celery import Celery

from eventq.messaging import PACK_TASK_NAME, TASK_NAME
from eventq.records import JobStatus
from eventq.settings import Settings
from eventq_cli.job_status import job_status
from tests.conftest import Stack, wait_for


def status_of(stack: Stack, job_id: str) -> JobStatus | None:
    return job_status(stack.settings, job_id)


def wait_state(stack: Stack, job_id: str, state: str, timeout_s: float = 30) -> JobStatus:
    def check() -> JobStatus | None:
        found = status_of(stack, job_id)
        return found if found is not None and found.state == state else None

    result: JobStatus = wait_for(check, timeout_s, f"job {job_id} {state}")
    return result


def states_of(stack: Stack, job_ids: list[str]) -> Counter[str]:
    """Count the jobs by state (`missing` when unknown); `redis down` when Redis cannot answer."""
    states: Counter[str] = Counter()
    try:
        for job_id in job_ids:
            found = status_of(stack, job_id)
            states[found.state if found is not None else "missing"] += 1
    except redis.RedisError:
        states["redis down"] += 1
    return states


def send_raw(settings: Settings, args: list[Any]) -> str:
    """Send a message the way a non-eventq Celery client would: by task name only; return the
    message's task id (a bare event's job id)."""
    app = Celery("raw-client", broker=settings.effective_broker_url)
    return str(app.send_task(TASK_NAME, args=args, queue=settings.queue).id)


def writes(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the requests that can make an event: creates (POST) and upserts (PUT)."""
    return [r for r in requests if r["method"] in ("POST", "PUT")]


def queued_messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Return the messages waiting in `queue` (newest first): their headers and decoded args."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        found.append({"headers": message["headers"], "args": args})
    return found


def queued_jobs(client: redis.Redis, queue: str) -> int:
    """Return how many jobs wait in `queue`: one per message, each job of a pack counted."""
    return sum(
        len(m["args"][0]) if m["headers"]["task"] == PACK_TASK_NAME else 1
        for m in queued_messages(client, queue)
    )
