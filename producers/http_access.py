"""The access log: each request gets an id (X-Request-Id), and is logged and counted once
answered, with the route, status, duration and the caller's key name (never the key)."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from producers.http_auth import PRINCIPAL
from producers.http_errors import REQUEST_ID
from producers.http_state import state_of

__all__ = ["observe_requests"]

log = logging.getLogger("eventq.http")


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").isalnum():
        return given
    return secrets.token_hex(8)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag the request with an id, then log and count it once it is answered."""
    request[REQUEST_ID] = request_id = _request_id(request)
    started = time.perf_counter()
    status = 499  # the client went away before an answer
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        elapsed_s = time.perf_counter() - started
        route = _route_label(request)
        state_of(request).metrics.observe(request, route, status, elapsed_s)
        principal = request.get(PRINCIPAL)
        log.info(
            "%s %s %s %.1f ms",
            request.method,
            request.path,
            status,
            elapsed_s * 1000,
            extra={"requestId": request_id, "keyName": principal.name if principal else None},
        )
