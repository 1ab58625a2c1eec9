"""The service's connection handler: a request that aiohttp's parser refuses (a request line or
header over `max_line_size`/`max_field_size`, invalid bytes, a broken request line) is answered
in our JSON error shape and logged as one line with its method and path only.

aiohttp answers such a request itself, outside the application and its middlewares: it logs the
parser's exception at ERROR, whose message quotes the start of the offending header block, and
echoes that message in a text/plain body, so an `Authorization` header or a session cookie
padded past 8,190 bytes would reach the log and the answer. aiohttp has no setting for the
handler class, so `ServiceRunner` installs `GuardedRequestHandler` on the server it builds.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)
from aiohttp.web_request import BaseRequest

from eventq.logs import escape_controls
from producers.http_models import ErrorBody

__all__ = ["GuardedRequestHandler", "ServiceRunner", "refusal_message", "request_line_of"]

log = logging.getLogger("eventq.http")

RECENT_CHUNKS = 4
# The last request line in the bytes received: method, then the path up to `?` (the query string
# may carry a token, so it is never logged).
_REQUEST_LINE = re.compile(rb"(?:^|\n)([A-Z]{1,20}) (/[^ ?#\r\n]{0,512})[^ \r\n]* HTTP/1\.\d\r?\n")


# What was wrong, in words that quote nothing the client sent (the most specific class first)
_REFUSALS: list[tuple[type[HttpProcessingError], str]] = [
    (LineTooLong, "the request line or a header is longer than {limit} bytes"),
    (BadHttpMethod, "the request method is not a valid HTTP method"),
    (BadStatusLine, "the request line is not `METHOD /path HTTP/1.1`"),
    (InvalidURLError, "the request path is not a valid URL (percent-encode other bytes)"),
    (InvalidHeader, "a header name or value holds bytes HTTP does not allow"),
    (PayloadEncodingError, "the body does not match its Content-Length or Transfer-Encoding"),
]


def refusal_message(error: HttpProcessingError, limit: int) -> str:
    """Return the sentence answering a request refused with `error` (never its content)."""
    for kind, sentence in _REFUSALS:
        if isinstance(error, kind):
            return "malformed HTTP request: " + sentence.format(limit=limit)
    return "malformed HTTP request: a header (Content-Length, Transfer-Encoding…) is invalid"


def request_line_of(received: bytes) -> tuple[str, str]:
    """Return the method and path of the last request line in `received` (`-` for unknown)."""
    found = None
    for found in _REQUEST_LINE.finditer(received):  # noqa: B007 (the last one is wanted)
        pass
    if found is None:
        return "-", "-"
    method, path = (part.decode("ascii", "backslashreplace") for part in found.groups())
    return method, escape_controls(path)


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, whose refusals of unparsable requests leak nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The parser keeps no request line once it fails, so the last few chunks are kept
        # (references, not copies) to find the method and path to log.
        self._recent: deque[bytes] = deque(maxlen=RECENT_CHUNKS)

    def data_received(self, data: bytes) -> None:
        """Remember the chunk, then parse it as aiohttp does."""
        self._recent.append(data)
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Log one line without headers and answer `ErrorBody` JSON; closes the connection."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has started; no error answer can follow")
        if isinstance(exc, HttpProcessingError):
            method, path = request_line_of(b"".join(self._recent))
            log.warning(
                "refused an unparsable request: %s %s %s (%s)",
                method,
                path,
                status,
                type(exc).__name__,
            )
            body = ErrorBody(
                error="malformed_request",
                message=refusal_message(exc, max(self.max_line_size, self.max_field_size)),
            )
        else:
            log.error(
                "unhandled error answering %s %s",
                request.method,
                escape_controls(request.path),
                exc_info=exc,
            )
            body = ErrorBody(
                error="internal_error", message="unexpected error; the service log has the details"
            )
        response = web.Response(
            status=status,
            body=body.model_dump_json(exclude_none=True),
            content_type="application/json",
        )
        response.force_close()
        return response


class _GuardedServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """aiohttp's `AppRunner`, whose connections are handled by `GuardedRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # aiohttp takes no handler class: adopt its server
        return server
