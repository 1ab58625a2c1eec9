"""Support for the HTTP service tests (no tests here): the service on a loopback port in a
background thread, API keys, a small client, and dead-letter entries written as a worker does.
The fixtures built on them are in tests/integration/conftest.py."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
import requests
from aiohttp import web

from eventq.jobs import JobStore
from eventq.keys import Keys
from eventq.records import DeadLetter, DeadLetterReason
from eventq.settings import Settings
from producers.http_protocol import ServiceRunner
from producers.http_service import create_app
from tests.conftest import dead_letter_entry
from worker.shared_state import shared_state_factory

PRODUCER_KEY = "pk-" + uuid.uuid4().hex  # unique, so a leak into a log is easy to find
ADMIN_KEY = "ak-" + uuid.uuid4().hex
KEY_ENV = {
    "EVENTQ_API_KEYS": f"billing:{PRODUCER_KEY}",
    "EVENTQ_ADMIN_API_KEYS": f"oncall:{ADMIN_KEY}",
}


class ServiceThread:
    """The HTTP service on 127.0.0.1:<free port>, served by its own event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app = create_app(settings, shared_state_factory(settings))
        self.runner = ServiceRunner(self.app, access_log=None)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="http-service", daemon=True)
        self._ready = threading.Event()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.SockSite(self.runner, self.sock).start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        # connections still lingering over an unread body (aiohttp reads it for up to 10 s)
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the HTTP service did not start")
        return self.base_url

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@contextmanager
def running_service(settings: Settings) -> Iterator[str]:
    """Run the service for the duration of the block; yields its base URL."""
    service = ServiceThread(settings)
    base_url = service.start()
    try:
        yield base_url
    finally:
        service.stop()


class Api:
    """A `requests` session against the service, sending `key` (if any) as a Bearer token."""

    def __init__(self, base_url: str, key: str | None = PRODUCER_KEY) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=60, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.base_url + path, timeout=30, **kwargs)


def seed_dead_letter(
    settings: Settings,
    payload: dict[str, Any],
    *,
    reason: DeadLetterReason = "invalid",
    http_status: int | None = None,
    message: str = "eventOrganizer: Field required",
    at: float | None = None,
) -> DeadLetter:
    """Dead-letter a job with `payload` exactly as a worker records it; returns the entry
    (`dead_letter_entry`'s)."""
    entry = dead_letter_entry(
        payload, reason=reason, http_status=http_status, message=message, at=at
    )
    job_id = entry.jobId

    async def write() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        store = JobStore(client, Keys(settings.key_prefix), ledger_ttl_s=60, job_ttl_s=600)
        await client.hset(
            Keys(settings.key_prefix).job(job_id),
            mapping={"jobId": job_id, "state": "in_progress", "createdAt": entry.firstEnqueuedAt},
        )
        await store.mark_dead_lettered(job_id, entry, entry.attempts[-1])
        await client.aclose()

    asyncio.run(write())
    return entry
