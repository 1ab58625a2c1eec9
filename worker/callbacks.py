"""Callbacks, the worker side: the dispatcher (outcome stream → tasks) and the task that POSTs.

The dispatcher runs in the callback worker (`worker.callback_app`), in a thread: it reads the
outcome stream in the consumer group `eventq-callbacks`, publishes one `eventq.send_callback`
task per entry that has a `callbackUrl`, and acknowledges the entry once its task is published
(an entry left unacknowledged by a dispatcher that died is claimed by another after
`_CLAIM_IDLE_MS`). A URL whose host is not allowed (a raw Celery message's: producers check at
enqueue) is never called. The task POSTs the signed outcome (`eventq.callbacks`); any answer
but a 2xx, a timeout or a connection error is retried with capped exponential backoff and
jitter, up to EVENTQ_CALLBACK_MAX_ATTEMPTS, then dead-lettered with reason `callback` (the job
keeps its own state: it was delivered or dead-lettered already). The secret never leaves this
module's signing call: not in the task's arguments, a log line, an exception or a DLQ entry.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from celery import Celery, Task, signals

from eventq.callbacks import (
    CALLBACK_TASK_NAME,
    Callback,
    host_allowed,
    signature_key,
    signed_headers,
)
from eventq.dead_letters import queue_add_entry
from eventq.errors import JobEnded
from eventq.keys import Keys
from eventq.messaging import send_callback as publish_callback
from eventq.outcomes import parse_entry
from eventq.records import AttemptRecord, DeadLetter, HubSpotErrorInfo
from eventq.redis_conn import sync_client
from eventq.settings import Settings
from worker.callback_app import app, settings

__all__ = ["GROUP", "CallbackDeadLettered", "Dispatcher", "send_callback"]

log = logging.getLogger("eventq.callbacks")

GROUP = "eventq-callbacks"
_CLAIM_IDLE_MS = 30_000
_READ_COUNT = 100


class CallbackFailed(JobEnded):
    """One try of a callback failed (status or network error); it is retried."""


class CallbackDeadLettered(JobEnded):
    """A callback failed every attempt and went to the dead-letter queue as `callback`."""


@dataclass(frozen=True)
class Answer:
    """What one try got: the HTTP status (None: no answer) and, when it failed, why."""

    status: int | None
    problem: str | None


class Dispatcher:
    """Turns outcome-stream entries with a `callbackUrl` into callback tasks, each once."""

    def __init__(self, client: redis.Redis, app: Celery, settings: Settings) -> None:
        self._redis = client
        self._app = app
        self._settings = settings
        self._stream = Keys(settings.key_prefix).outcomes
        self._consumer = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"

    def ensure_group(self) -> None:
        """Create the consumer group at the stream's start (a no-op when it exists)."""
        try:
            self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def run_once(self, block_ms: int) -> int:
        """Publish the tasks of stale claimed entries, then of new ones; returns how many."""
        claimed: list[Any] = self._redis.xautoclaim(  # type: ignore[assignment]
            self._stream, GROUP, self._consumer, _CLAIM_IDLE_MS, "0-0", count=_READ_COUNT
        )
        stale = claimed[1]
        answer: Any = self._redis.xreadgroup(
            GROUP, self._consumer, {self._stream: ">"}, count=_READ_COUNT, block=block_ms
        )
        fresh = answer[0][1] if answer else []
        return sum(self._dispatch(entry_id, fields) for entry_id, fields in [*stale, *fresh])

    def _dispatch(self, entry_id: Any, fields: Any) -> int:
        if not fields:  # trimmed away (MAXLEN) while pending: nothing left to send
            self._redis.xack(self._stream, GROUP, entry_id)
            return 0
        entry = parse_entry(entry_id, fields)
        url = entry.callbackUrl
        if url is not None and not host_allowed(url, self._settings.callback_allowed_hosts):
            # a raw Celery message is not checked at enqueue: checked here, before any request
            log.warning("job %s: callback host not allowed, not sent", entry.outcome.jobId)
            url = None
        if url is not None:
            callback = Callback(id=entry.id, url=url, outcome=entry.outcome)
            publish_callback(self._app, callback, self._settings)
        self._redis.xack(self._stream, GROUP, entry_id)
        return 0 if url is None else 1

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set; Redis errors are logged and retried after a second."""
        while not stop.is_set():
            try:
                self.ensure_group()
                while not stop.is_set():
                    self.run_once(block_ms=500)
            except redis.RedisError as error:
                log.warning("callback dispatcher: Redis error (%s), retrying", type(error).__name__)
                stop.wait(1)


def backoff_s(attempt: int, settings: Settings) -> float:
    """Return the delay before the try after `attempt`: doubled per attempt, capped, ±20%."""
    doubled = settings.callback_backoff_base_s * 2.0 ** (attempt - 1)
    return float(min(settings.callback_backoff_cap_s, doubled)) * random.uniform(0.8, 1.2)  # noqa: S311 - spreads retries, not crypto


class _Http:
    """One HTTP client per callback worker process (threads share it), made on first use."""

    _client: httpx.Client | None = None
    _lock = threading.Lock()

    @classmethod
    def client(cls, timeout_s: float) -> httpx.Client:
        with cls._lock:
            if cls._client is None:
                cls._client = httpx.Client(timeout=timeout_s, follow_redirects=False)
            return cls._client


def post(callback: Callback, settings: Settings) -> Answer:
    """POST the signed callback once; returns its status, and why it failed when it did."""
    if settings.callback_secret is None:
        return Answer(None, "EVENTQ_CALLBACK_SECRET is not set: callbacks are not signed")
    body = callback.body()
    key = signature_key(settings.callback_secret.get_secret_value())
    headers = signed_headers(key, callback.id, int(time.time()), body)
    try:
        response = _Http.client(settings.callback_timeout_s).post(
            callback.url, content=body, headers=headers
        )
    except httpx.HTTPError as error:  # the message may name the URL, never the secret
        return Answer(None, f"{type(error).__name__}: no answer from the receiver")
    if 200 <= response.status_code < 300:
        return Answer(response.status_code, None)
    return Answer(response.status_code, f"receiver answered {response.status_code}")


def dead_letter(callback: Callback, answer: Answer, attempt: int, settings: Settings) -> str:
    """Write the callback's DLQ entry (reason `callback`); returns its id."""
    now = time.time()
    detail = answer.problem or "failed"
    record = AttemptRecord(
        attempt=attempt, at=now, outcome="dead_letter", httpStatus=answer.status, detail=detail
    )
    entry = DeadLetter(
        id=uuid.uuid4().hex,
        jobId=callback.outcome.jobId,
        payload=callback.model_dump(mode="json"),
        reason="callback",
        httpStatus=answer.status,
        error=HubSpotErrorInfo(message=f"callback failed {attempt} times: {detail}"),
        attempts=[record],
        source="callback",
        callbackUrl=callback.url,
        firstEnqueuedAt=callback.outcome.at,
        deadLetteredAt=now,
    )
    client = redis_client(settings)
    with client.pipeline(transaction=True) as pipe:
        queue_add_entry(pipe, Keys(settings.key_prefix), entry)
        pipe.execute()
    return entry.id


# by the id of the settings, which are kept too (so that id is never another's)
_clients: dict[int, tuple[Settings, redis.Redis]] = {}


def redis_client(settings: Settings) -> redis.Redis:
    """Return this process's client of the settings' Redis, made once by the factory
    (`eventq.redis_conn.sync_client`: Sentinel, TLS files, timeouts and retries as every
    other eventq client)."""
    if id(settings) not in _clients:
        _clients[id(settings)] = (settings, sync_client(settings))
    return _clients[id(settings)][1]


@app.task(
    name=CALLBACK_TASK_NAME,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    throws=(CallbackDeadLettered, CallbackFailed),
)
def send_callback(self: Task, callback: Any = None) -> dict[str, Any]:
    """POST one signed callback; retry with backoff, dead-letter it after the last attempt."""
    sent = Callback.model_validate(callback)
    attempt = int(self.request.retries) + 1
    answer = post(sent, settings)
    job = sent.outcome.jobId
    if answer.problem is None:
        log.info("callback of job %s delivered (attempt %s)", job, attempt)
        return {"jobId": job, "status": answer.status, "attempt": attempt}
    if attempt >= settings.callback_max_attempts:
        entry_id = dead_letter(sent, answer, attempt, settings)
        log.warning("callback of job %s dead-lettered as %s: %s", job, entry_id, answer.problem)
        raise CallbackDeadLettered(f"dead-lettered as {entry_id}: {answer.problem}")
    delay_s = backoff_s(attempt, settings)
    log.info("callback of job %s: %s; retry in %.2f s", job, answer.problem, delay_s)
    raise self.retry(countdown=delay_s, max_retries=None, exc=CallbackFailed(answer.problem))


class _Running:
    """The callback worker's dispatcher thread (started when the worker is ready)."""

    stop = threading.Event()
    thread: threading.Thread | None = None


@signals.worker_ready.connect
def _start_dispatcher(sender: Any = None, **_: Any) -> None:
    if settings.callback_secret is None:
        log.error("EVENTQ_CALLBACK_SECRET is not set: callbacks will be dead-lettered")
    dispatcher = Dispatcher(redis_client(settings), app, settings)
    _Running.stop.clear()
    _Running.thread = threading.Thread(
        target=dispatcher.run, args=(_Running.stop,), name="eventq-callbacks", daemon=True
    )
    _Running.thread.start()


@signals.worker_shutdown.connect
def _stop_dispatcher(**_: Any) -> None:
    _Running.stop.set()
    if _Running.thread is not None:
        _Running.thread.join(5)
