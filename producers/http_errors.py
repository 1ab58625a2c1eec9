"""Errors of the HTTP service: one exception type and the middleware that answers every error
as JSON in the `ErrorBody` shape, never with a traceback.

    ApiError            raised by handlers and helpers: status, stable code, message, details
    web.HTTPException   aiohttp's own (404, 405, 413 …): rewritten into the same shape
    redis / broker down answered 503 `unavailable`
    anything else       logged with its traceback, answered 500 `internal_error`
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus

import kombu.exceptions
import redis
from aiohttp import web
from aiohttp.typedefs import Handler

from eventq.errors import EventqError
from producers.enqueue import FieldError, FieldWarning
from producers.http_models import ErrorBody, ErrorCode, FieldProblem, JsonPosition

__all__ = ["REQUEST_ID", "ApiError", "error_response", "handle_errors", "problems_of"]

log = logging.getLogger("eventq.http")

REQUEST_ID = web.RequestKey("request_id", str)
RETRY_AFTER_S = 5
_CODES: dict[int, ErrorCode] = {
    400: "malformed_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    503: "unavailable",
}
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class ApiError(EventqError):
    """An answer other than success: HTTP status, stable `code`, a sentence, and details."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        errors: Sequence[FieldProblem] = (),
        position: JsonPosition | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code: ErrorCode = code
        self.message = message
        self.errors = list(errors)
        self.position = position
        self.headers = dict(headers or {})


def problems_of(errors: Sequence[FieldError | FieldWarning]) -> list[FieldProblem]:
    """Return the producer's field errors (or warnings) as response models."""
    return [FieldProblem(field=e.field, message=e.message) for e in errors]


def error_response(request: web.Request, error: ApiError) -> web.Response:
    """Return the JSON answer for `error`, tagged with the request id."""
    body = ErrorBody(
        error=error.code,
        message=error.message,
        errors=error.errors,
        position=error.position,
        requestId=request.get(REQUEST_ID, ""),
    )
    return web.Response(
        status=error.status,
        body=body.model_dump_json(exclude_none=True),
        content_type="application/json",
        headers=error.headers,
    )


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    status = exc.status
    code = _CODES.get(status, "http_error")
    message = _message_for(exc)
    kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    return ApiError(status, code, message, headers=kept)


def _message_for(exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"method {exc.method} not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return "request body too large"
    if isinstance(exc, web.HTTPNotFound):
        return "no such route"
    try:
        return HTTPStatus(exc.status).phrase
    except ValueError:
        return "HTTP error"


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True

    return isinstance(exc, kombu.exceptions.OperationalError)


@web.middleware
async def handle_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure of `handler` as JSON; log unexpected ones with their traceback."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            return web.Response(status=exc.status, headers=exc.headers)
        return error_response(request, _from_http_exception(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if _is_outage(exc):
            log.warning("Redis or the broker is unreachable: %s", type(exc).__name__)
            outage = ApiError(
                503,
                "unavailable",
                "Redis or the broker is unreachable; try again later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            return error_response(request, outage)
        log.exception("unexpected error", extra={"requestId": request.get(REQUEST_ID, "")})
        internal = ApiError(
            500, "internal_error", "unexpected error; the service log has the details"
        )
        return error_response(request, internal)
