"""`eventq serve`: the aiohttp application for ingest, job status, the DLQ admin API, operations
routes and the admin page, assembled from the route table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
from aiohttp import web

from eventq.jobs import JobStore
from eventq.logs import configure_logging
from eventq.redis_conn import async_client, is_redis_url
from eventq.settings import Settings
from producers.cluster_state import ClusterReader, SharedStateFactory
from producers.enqueue import Producer
from producers.http_access import observe_requests
from producers.http_admin_page import add_security_headers, admin_page_routes
from producers.http_audit import AuditLog, audit_routes
from producers.http_auth import KeyRing, authenticate
from producers.http_bulk import bulk_routes
from producers.http_dead_letters import dead_letter_routes
from producers.http_errors import handle_errors
from producers.http_health import health_routes
from producers.http_ingest import ingest_routes
from producers.http_metrics import HttpMetrics, metrics_routes
from producers.http_openapi import OPENAPI_DOC, encode_openapi, openapi_routes
from producers.http_overview import overview_routes
from producers.http_protocol import ServiceRunner
from producers.http_routes import Route
from producers.http_sessions import SessionStore
from producers.http_state import STATE, ServiceState
from producers.replay import Replayer

__all__ = ["all_routes", "create_app", "run_server"]

log = logging.getLogger("eventq.http")

EXECUTOR_THREADS = 16
SHUTDOWN_TIMEOUT_S = 10.0


def all_routes(settings: Settings) -> list[Route]:
    """Return every route of the service, in the order they are documented."""
    return [
        *ingest_routes(settings),
        *dead_letter_routes(),
        *bulk_routes(),
        *audit_routes(),
        *overview_routes(),
        *health_routes(),
        *metrics_routes(),
        *openapi_routes(),
        *admin_page_routes(),
    ]


def _broker_client(settings: Settings) -> aioredis.Redis | None:
    url = settings.effective_broker_url
    return async_client(settings, settings.broker_url) if is_redis_url(url) else None


def _state(settings: Settings, shared: SharedStateFactory | None) -> ServiceState:
    producer = Producer(settings)
    client: aioredis.Redis = async_client(settings)
    keys = producer.keys
    broker = _broker_client(settings)
    return ServiceState(
        settings=settings,
        producer=producer,
        executor=ThreadPoolExecutor(EXECUTOR_THREADS, thread_name_prefix="eventq-http"),
        redis=client,
        broker_redis=broker,
        jobs=JobStore(
            client, keys, ledger_ttl_s=settings.ledger_ttl_s, job_ttl_s=settings.job_ttl_s
        ),
        replayer=Replayer(producer),
        audit=AuditLog(client, keys),
        sessions=SessionStore(client, keys),
        keyring=KeyRing(settings.api_keys, settings.admin_api_keys),
        metrics=HttpMetrics(),
        cluster=ClusterReader(settings, client, broker, shared and shared(client)),
        routes={},
    )


async def _close(app: web.Application) -> None:
    state = app[STATE]
    await state.redis.aclose()
    if state.broker_redis is not None:
        await state.broker_redis.aclose()
    state.executor.shutdown(wait=False, cancel_futures=True)
    state.producer.redis.close()
    state.producer.app.close()


def create_app(settings: Settings, shared: SharedStateFactory | None = None) -> web.Application:
    """Return the HTTP service as an aiohttp application (connections open on first use).

    `shared` makes, from the service's Redis client, the reader of the limiter and breaker
    state for the overview (the command line passes the worker's); without it the overview
    shows neither.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[observe_requests, handle_errors, authenticate],
    )
    routes = all_routes(settings)
    state = _state(settings, shared)
    for route in routes:
        if route.method == "GET":
            registered = app.router.add_get(route.path, route.handler)
        else:
            registered = app.router.add_route(route.method, route.path, route.handler)
        assert registered.resource is not None
        state.routes[(route.method, registered.resource.canonical)] = route
    app[STATE] = state
    app[OPENAPI_DOC] = encode_openapi(routes)
    app.on_response_prepare.append(add_security_headers)
    app.on_cleanup.append(_close)
    return app


def run_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    shared: SharedStateFactory | None = None,
) -> None:
    """Serve the HTTP service until interrupted (host and port default to the settings)."""
    configure_logging(settings)
    bind_host = host or settings.http_host
    bind_port = settings.http_port if port is None else port
    if not settings.api_keys and not settings.admin_api_keys:
        log.warning("no EVENTQ_API_KEYS or EVENTQ_ADMIN_API_KEYS: every API call will get 401")
    log.info("HTTP service on http://%s:%s (admin page at /admin/)", bind_host, bind_port)
    # web.run_app, but with ServiceRunner: its runner cannot be chosen
    runner = ServiceRunner(
        create_app(settings, shared),
        handle_signals=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve(runner, bind_host, bind_port))


async def _serve(runner: ServiceRunner, host: str, port: int) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()
