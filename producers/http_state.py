"""What one running HTTP service shares between requests, stored on the aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from eventq.jobs import JobStore
    from eventq.settings import Settings
    from producers.cluster_state import ClusterReader
    from producers.enqueue import Producer
    from producers.http_audit import AuditLog
    from producers.http_auth import KeyRing
    from producers.http_metrics import HttpMetrics
    from producers.http_routes import Route
    from producers.http_sessions import SessionStore
    from producers.replay import Replayer

__all__ = ["STATE", "ServiceState", "state_of"]

T = TypeVar("T")


@dataclass
class ServiceState:
    """One Producer, one Redis client, one thread pool: reused by every request."""

    settings: Settings
    producer: Producer
    executor: ThreadPoolExecutor
    redis: aioredis.Redis
    broker_redis: aioredis.Redis | None
    jobs: JobStore
    replayer: Replayer
    audit: AuditLog
    sessions: SessionStore
    keyring: KeyRing
    metrics: HttpMetrics
    cluster: ClusterReader
    routes: dict[tuple[str, str], Route]

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Return `func(*args, **kwargs)` run in the service's thread pool (for blocking calls)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(func, *args, **kwargs))

    def route_for(self, request: web.Request) -> Route | None:
        """Return the route record serving `request` (HEAD uses its GET route), or None."""
        resource = request.match_info.route.resource
        if resource is None:
            return None
        method = "GET" if request.method == "HEAD" else request.method
        return self.routes.get((method, resource.canonical))


STATE = web.AppKey("eventq_state", ServiceState)


def state_of(request: web.Request) -> ServiceState:
    """Return the shared state of the service handling `request`."""
    return request.app[STATE]
