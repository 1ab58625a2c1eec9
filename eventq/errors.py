"""The root of every exception eventq raises, and the small groups under it.

The tree (leaves live beside the code that raises them; the core defines the root and groups)::

    EventqError                      eventq.errors
    ├── InvalidInput                 eventq.errors: a person must fix something; `field`, `fix`
    │   ├── SettingsError            eventq.settings: an EVENTQ_* variable is missing or malformed
    │   ├── UnknownAccount           eventq.accounts: a job names a portal with no OAuth account
    │   ├── RejectedEvent            producers.enqueue: an event failed validation, nothing queued
    │   ├── UnknownId                eventq_cli.ids: no record has the id (or a prefix of it)
    │   └── AmbiguousId              eventq_cli.ids: several ids start with the prefix given
    ├── CredentialsError             worker.credentials: no usable token; an admin must act
    │   └── CredentialsUnavailable   worker.credentials: no token right now; try again later
    ├── JobEnded                     eventq.errors: how a task ended, told to Celery
    │   ├── Parked                   worker.tasks: waits in the retry schedule
    │   ├── DeadLettered             worker.tasks: went to the dead-letter queue
    │   ├── CallbackFailed           worker.callbacks: a callback try failed; retried
    │   └── CallbackDeadLettered     worker.callbacks: a callback failed every attempt
    ├── _Invalid                     worker.delivery: a job's payload cannot be sent (private)
    ├── RedisUnavailable             eventq.redis_conn: Redis refused us or is unreachable
    ├── RedisMoved                   eventq.redis_conn: READONLY: Redis moved (failover)
    ├── WriteNotConfirmed            eventq.durable_writes: no replica confirmed a write
    ├── ApiError                     producers.http_errors: an HTTP answer other than success
    └── FakeControlError             fake_hubspot.control: the fake refused a control call

`except EventqError` catches everything of ours and nothing of Redis', aiohttp's or Celery's.
Where an error used to be a `ValueError` or `RuntimeError`, it still is one as well. `RedisMoved`
and `WriteNotConfirmed` are `redis.ConnectionError`s too, so that whatever handles "Redis is
unavailable" (a worker requeues, the HTTP service answers 503, the CLI prints one line) handles
them.
"""

from __future__ import annotations

__all__ = ["EventqError", "InvalidInput", "JobEnded"]


class EventqError(Exception):
    """Anything eventq raises on purpose; the message never carries a credential."""


class InvalidInput(EventqError):
    """Input a person must fix. `field` names what is wrong (an `EVENTQ_*` variable, a JSON path
    such as `customProperties.0.name`, or `portalId`); `fix` says what to do; the message says
    both in one line."""

    def __init__(self, message: str, *, field: str | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.fix = fix


class JobEnded(EventqError):
    """A delivery task ended without a delivery; Celery and Flower show the message."""
