"""kombu's Redis transport, with channels that give up quietly once their connection is closed.

Why: when a worker loses Redis, Celery (5.7, `Consumer.on_connection_error_after_connected`)
first calls `Connection.collect()`, which for the Redis transport closes the channels and then
detaches the transport from its connection (`transport.client = None`), then calls
`Connection.close()`. A channel still holding deliveries (messages in flight, unacked) then
restores them, and the hub later runs the acks of attempts that finished meanwhile: both build a
new Redis client from `self.connection.client`, which is now None, so kombu raises
`AttributeError: 'NoneType' object has no attribute 'hostname'` (`Channel._connparams`). That
is not one of the connection errors `ignore_errors` and `maybe_close_channel` swallow, so it
escapes to the worker: `Unrecoverable error`, and the worker exits. It only happens with
deliveries in flight, which is why one restart shows it and the next does not. kombu has met
the same `None` client on close before (celery/kombu#582, #970); this path is not fixed in
kombu 5.7.

What this transport does instead: on a detached channel an ack, a reject or the restore at close
does nothing (the messages stay in Redis's unacked hash, and the visibility-timeout restore puts
them back in the queue, as after a SIGKILL; eventq's job record makes a redelivered, finished
job a no-op), and any other command raises `redis.ConnectionError`, which kombu and Celery treat
as the connection loss it is.

A failover too: its connections answer READONLY (the address now reaches a replica) with
`RedisMoved`, a connection error, instead of the ReadOnlyError that Celery treats as
unrecoverable (eventq.redis_conn), and `SentinelTransport` does the same for `sentinel://`.

`install()` makes these what kombu's `redis://`, `rediss://` and `sentinel://` URLs name in this
process: the worker and Flower call it (`worker.celery_app`). Aliases rather than Celery's
`broker_transport` setting, so URLs keep kombu's scheme names: Celery's banner, and Flower's
broker views, which only know `redis`, `rediss` and `sentinel`.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu.transport
import redis
from kombu.transport import redis as kombu_redis

from eventq.redis_conn import MovedAwareConnection, MovedAwareSSLConnection

__all__ = ["Channel", "QoS", "SentinelChannel", "SentinelTransport", "Transport", "install"]

log = logging.getLogger("eventq.broker")


def _detached(channel: Any) -> bool:
    transport = channel.connection
    return transport is None or transport.client is None


class QoS(kombu_redis.QoS):
    """Unacked-message bookkeeping that leaves a closed connection's messages to the broker."""

    def ack(self, delivery_tag: Any) -> None:
        """Ack the message, unless its connection is closed (it will be redelivered)."""
        if _detached(self.channel):
            log.debug("ack of %s skipped: its broker connection is closed", delivery_tag)
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        """Reject the message, unless its connection is closed (it will be redelivered)."""
        if _detached(self.channel):
            return
        super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]

    def restore_unacked(self, client: Any = None) -> None:
        """Requeue this channel's deliveries now, unless its connection is closed (the
        visibility-timeout restore requeues them)."""
        if client is None and _detached(self.channel):
            self._delivered.clear()
            return
        super().restore_unacked(client)  # type: ignore[no-untyped-call]


class _Detachable:
    """A channel whose commands fail as a connection error once it is detached."""

    def _connparams(self, asynchronous: bool = False) -> Any:
        if _detached(self):
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Channel(_Detachable, kombu_redis.Channel):
    """A Redis channel, detached safely, whose connections take READONLY as a lost connection."""

    QoS = QoS
    connection_class = MovedAwareConnection
    connection_class_ssl = MovedAwareSSLConnection


class SentinelChannel(_Detachable, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, detached safely (its connections already take READONLY as a
    lost connection: redis-py's Sentinel-managed connection)."""

    QoS = QoS


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with `SentinelChannel`."""

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
