"""Writes that must survive the primary's death: confirmed on replicas with `WAIT`.

Redis replicates asynchronously: a write the primary acknowledged can be lost if the primary
dies before a replica has it and Sentinel promotes that replica. With
EVENTQ_REDIS_DURABLE_WRITES=true, accepting a job, recording an attempt's outcome and writing a
DLQ entry are each followed by `WAIT numreplicas timeout`; an unconfirmed write raises
`WriteNotConfirmed`, which callers already treat as "Redis unavailable, try again".

`WAIT` counts the writes of the connection it runs on, and a pooled client may send the next
command on another connection. So the confirmation writes a small mark and waits on the same
connection, in one pipeline: the mark comes after the write to confirm (its reply was already
read), and replication is in order, so a replica holding the mark holds the write too, and
every write before it on that primary (the Celery message as well, when the broker is the same
Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError

from eventq.errors import EventqError
from eventq.keys import Keys
from eventq.settings import Settings

__all__ = ["Durability", "WriteNotConfirmed", "confirm_writes"]

_MARK_TTL_MS = 60_000


class WriteNotConfirmed(EventqError, ConnectionError):
    """Fewer replicas than EVENTQ_REDIS_DURABLE_REPLICAS confirmed a write in time: it may be
    lost in a failover. Retry it (an enqueue is idempotent by external id). A
    `redis.ConnectionError` as well, so it is handled as Redis being unavailable."""


def confirm_writes(client: Any, settings: Settings) -> None:
    """With EVENTQ_REDIS_DURABLE_WRITES, wait until replicas hold everything `client` (a
    blocking client) and this process wrote so far; raise WriteNotConfirmed. Else do nothing."""
    durability = Durability.from_settings(settings)
    if durability is not None:
        durability.confirm(client)


@dataclass(frozen=True)
class Durability:
    """How many replicas must confirm a durable write, and how long to wait for them."""

    replicas: int
    timeout_ms: int
    mark_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Durability | None:
        """Return the durability the settings ask for, or None when durable writes are off."""
        if not settings.redis_durable_writes:
            return None
        return cls(
            settings.redis_durable_replicas,
            settings.redis_durable_timeout_ms,
            Keys(settings.key_prefix).durable_mark,
        )

    def confirm(self, client: Any) -> None:
        """Wait until the replicas hold everything written so far; raise WriteNotConfirmed."""
        with client.pipeline(transaction=False) as pipe:
            self._queue(pipe)
            self._check(pipe.execute()[-1])

    async def confirm_async(self, client: Any) -> None:
        """`confirm` on an asyncio client."""
        async with client.pipeline(transaction=False) as pipe:
            self._queue(pipe)
            self._check((await pipe.execute())[-1])

    def _queue(self, pipe: Any) -> None:
        pipe.set(self.mark_key, 1, px=_MARK_TTL_MS)
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms)

    def _check(self, acknowledged: Any) -> None:
        if int(acknowledged) < self.replicas:
            raise WriteNotConfirmed(
                f"write confirmed by {int(acknowledged)} of {self.replicas} Redis replica(s) "
                f"within {self.timeout_ms} ms; it may be lost in a failover: retry it"
            )
