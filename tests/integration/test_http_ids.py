"""Odd ids on the job and dead-letter routes: 404, never 500, and no Redis key built from them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import redis

from tests.conftest import Stack, valid_event
from tests.integration.http_support import Api, seed_dead_letter


@contextmanager
def commands_on(client: redis.Redis, prefix: str) -> Iterator[list[str]]:
    """Collect (with MONITOR) every command that names a key under `prefix` while the block runs.

    On leaving, a marker command is sent and awaited, so every command sent before it is in.
    """
    seen: list[str] = []
    marker = f"{prefix}:marker-{time.monotonic_ns()}"
    ready, done = threading.Event(), threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                text = str(command["command"])
                if marker in text:
                    done.set()
                    return
                if prefix in text:
                    seen.append(text)

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(10)
    try:
        yield seen
    finally:
        client.echo(marker)
        assert done.wait(10), "MONITOR did not see the marker"


def odd_ids(real_id: str) -> list[str]:
    return [
        f"{real_id}:history",
        f"{real_id}:lock",
        "*",
        f"{real_id}*",
        "..",
        "x" * 300,
        "évènement-ü",
        "😀",
        "a b",
        "a\nb",
        "-leading-dash",
    ]


def test_odd_job_and_dead_letter_ids_are_404_without_touching_a_key(
    stack: Stack, api: Api, admin: Api, redis_client: redis.Redis, key_prefix: str
) -> None:
    # Given a real job (with its history and a lock, as while an attempt runs) and a real entry
    job_id = api.post("/v1/events", json=valid_event("ids")).json()["jobId"]
    redis_client.rpush(
        f"{key_prefix}:job:{job_id}:history", '{"attempt": 1, "at": 1.0, "outcome": "retry"}'
    )
    redis_client.set(f"{key_prefix}:job:{job_id}:lock", "worker-1")
    entry = seed_dead_letter(stack.settings, {"eventName": "x"})
    calls: list[tuple[str, Callable[[str], object]]] = []
    for odd in [*odd_ids(job_id), *odd_ids(entry.id)]:
        path = quote(odd, safe="")
        calls.append((f"GET /v1/jobs/{path}", api.get))
        calls.append((f"GET /v1/dead-letters/{path}", admin.get))
        calls.append((f"DELETE /v1/dead-letters/{path}", admin.delete))
    # When each odd id is asked for or deleted
    with commands_on(redis_client, key_prefix) as commands:
        answers = {}
        for label, call in calls:
            response = call(label.split(" ", 1)[1])
            answers[label] = (response.status_code, response.json()["error"])
    # Then each is a 404 `not_found`, and not one command named a key of this eventq
    assert {label: a for label, a in answers.items() if a != (404, "not_found")} == {}
    assert commands == []
    # and the real job and entry are still there, and answer under their own ids
    assert redis_client.exists(f"{key_prefix}:job:{job_id}:history")
    assert api.get(f"/v1/jobs/{job_id}").status_code == 200
    assert admin.get(f"/v1/dead-letters/{entry.id}").status_code == 200
