"""The peer a user would pick instead: a Dramatiq actor that POSTs each event with `requests`.

Run as `dramatiq bench.dramatiq_actor --processes <CPUs> --threads 32 --queues $BENCH_QUEUE`;
the broker is Dramatiq's Redis broker on `BENCH_BROKER_URL` under the namespace
`BENCH_DRAMATIQ_NAMESPACE`, HubSpot (the fake) at `BENCH_HUBSPOT_BASE_URL` with
`BENCH_HUBSPOT_TOKEN`. One `requests.Session` per worker thread (connection reuse, as a careful
user would write it); a non-2xx answer raises, so Dramatiq's own retries apply.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import dramatiq
import requests
from dramatiq.brokers.redis import RedisBroker

__all__ = ["ACTOR_NAME", "broker", "create_marketing_event"]

ACTOR_NAME = "bench_create_marketing_event"
_PATH = "/marketing/v3/marketing-events/events"

broker = RedisBroker(
    url=os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/0"),
    namespace=os.environ.get("BENCH_DRAMATIQ_NAMESPACE", "dramatiq"),
)
dramatiq.set_broker(broker)
_local = threading.local()


def _session() -> requests.Session:
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer " + os.environ.get("BENCH_HUBSPOT_TOKEN", "")
        _local.session = session
    return session


@dramatiq.actor(  # type: ignore[misc]
    actor_name=ACTOR_NAME, queue_name=os.environ.get("BENCH_QUEUE", "bench-dramatiq")
)
def create_marketing_event(event: dict[str, Any]) -> None:
    """POST one event to HubSpot's create endpoint; raise on anything but a 2xx."""
    base = os.environ.get("BENCH_HUBSPOT_BASE_URL", "http://127.0.0.1:8090")
    answer = _session().post(base + _PATH, json=event, timeout=20)
    answer.raise_for_status()
