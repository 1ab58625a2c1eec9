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
as the connection loss it is. `eventq.messaging.make_celery` selects it for `redis://` brokers.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "QoS", "Transport"]

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


class Channel(kombu_redis.Channel):
    """A Redis channel whose commands fail as a connection error once it is detached."""

    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> Any:
        if _detached(self):
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel`."""

    Channel = Channel
