"""`GET /healthz` (the process answers) and `GET /readyz` (Redis and the broker answer too)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web

from producers.http_bodies import json_response
from producers.http_models import HealthResponse, ReadyResponse
from producers.http_routes import Route
from producers.http_state import ServiceState, state_of

__all__ = ["health_routes"]

log = logging.getLogger("eventq.http")

CHECK_TIMEOUT_S = 2.0
Check = Literal["ok", "unreachable"]


async def get_health(request: web.Request) -> web.Response:
    """Return 200 while the process serves requests."""
    return json_response(HealthResponse())


async def _redis_ok(state: ServiceState) -> Check:
    try:
        await asyncio.wait_for(state.redis.ping(), CHECK_TIMEOUT_S)
    except Exception as error:  # any failure means "not ready"
        log.warning("readyz: Redis check failed: %s", type(error).__name__)
        return "unreachable"
    return "ok"


def _broker_connects(state: ServiceState) -> None:
    with state.producer.app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)


async def _broker_ok(state: ServiceState) -> Check:
    try:
        if state.broker_redis is not None:
            await asyncio.wait_for(state.broker_redis.ping(), CHECK_TIMEOUT_S)
        else:
            await asyncio.wait_for(state.run(_broker_connects, state), CHECK_TIMEOUT_S * 2)
    except Exception as error:  # any failure means "not ready"
        log.warning("readyz: broker check failed: %s", type(error).__name__)
        return "unreachable"
    return "ok"


async def get_ready(request: web.Request) -> web.Response:
    """Return 200 when Redis and the broker answer, else 503 naming the one that does not."""
    state = state_of(request)
    redis_check, broker_check = await asyncio.gather(_redis_ok(state), _broker_ok(state))
    checks: dict[str, Check] = {"redis": redis_check, "broker": broker_check}
    ready = all(value == "ok" for value in checks.values())
    answer = ReadyResponse(status="ready" if ready else "not_ready", checks=checks)
    return json_response(answer, 200 if ready else 503)


def health_routes() -> list[Route]:
    """Return the liveness and readiness routes."""
    return [
        Route(
            "GET",
            "/healthz",
            get_health,
            "public",
            "getHealth",
            "Liveness: the process answers",
            "operations",
            {200: HealthResponse},
        ),
        Route(
            "GET",
            "/readyz",
            get_ready,
            "public",
            "getReady",
            "Readiness: Redis and the broker answer",
            "operations",
            {200: ReadyResponse, 503: ReadyResponse},
        ),
    ]
