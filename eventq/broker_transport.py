"""kombu's Redis and Sentinel transports, with a channel that survives losing its broker.

A Redis that answers READONLY (a failover behind one address: the old primary is now a
replica) is a lost connection too: kombu would otherwise raise ReadOnlyError from an ack or a
BRPOP, which Celery treats as unrecoverable.

When the broker connection drops (Redis killed, a Sentinel failover), Celery closes the
connection, and kombu's channel, while closing, asks for a new client to hand unacked messages
back. By then the connection has let go of its parameters (`connection.client` is None), and
kombu 5.7 raised AttributeError there: "Unrecoverable error", the worker process exited. Here
that request fails as a `redis.ConnectionError` instead, which Celery's close ignores; the
consumer reconnects (through the sentinels: to the new primary) and the unacked messages come
back after the visibility timeout, as for a worker that died.

`install()` makes them what kombu's `redis://`, `rediss://` and `sentinel://` URLs name in this
process (the worker and Flower call it: `worker.celery_app`), so URLs, Celery's banner and
Flower's broker views keep kombu's own scheme names.
"""

from __future__ import annotations

from typing import Any

import kombu.transport
import redis
from kombu.transport import redis as kombu_redis

from eventq.redis_conn import MovedAwareConnection, MovedAwareSSLConnection

__all__ = ["SentinelTransport", "Transport", "install"]


class _ClosedSafely:
    """A channel whose connection parameters, once gone, are a connection error."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("broker connection closed; unacked messages come back")
        return super()._connparams(asynchronous)  # type: ignore[misc]


class Channel(_ClosedSafely, kombu_redis.Channel):
    """kombu's Redis channel, closed safely after a lost connection, whose connections take
    READONLY (the address now reaches a replica) as a lost connection: reconnect, not crash."""

    connection_class = MovedAwareConnection
    connection_class_ssl = MovedAwareSSLConnection


class SentinelChannel(_ClosedSafely, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, closed safely after a lost connection."""


class Transport(kombu_redis.Transport):
    """`redis://` / `rediss://` broker transport with the safe channel."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """`sentinel://` broker transport with the safe channel."""

    Channel = SentinelChannel


_ALIASES = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:Transport",
    "sentinel": f"{__name__}:SentinelTransport",
}


def install() -> None:
    """Make kombu's Redis URL schemes use these transports in this process (idempotent)."""
    for scheme, path in _ALIASES.items():
        kombu.transport.TRANSPORT_ALIASES[scheme] = path
        kombu.transport._transport_cache.pop(scheme, None)
