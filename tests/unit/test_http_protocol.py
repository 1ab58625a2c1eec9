"""The HTTP parser's refusals: what is logged (method and path only) and what is answered."""

from __future__ import annotations

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidURLError, LineTooLong

from producers.http_protocol import refusal_message, request_line_of

KEY = "pk-0123456789abcdef"


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (
            b"GET /v1/jobs/abc HTTP/1.1\r\nAuthorization: Bearer " + KEY.encode(),
            ("GET", "/v1/jobs/abc"),
        ),
        (
            b"POST /v1/events?token=" + KEY.encode() + b" HTTP/1.1\r\nHost: x",
            ("POST", "/v1/events"),
        ),
        (
            b"GET /ok HTTP/1.1\r\n\r\nDELETE /v1/dead-letters/x HTTP/1.1\r\nX: y",
            ("DELETE", "/v1/dead-letters/x"),
        ),
        (b"GET /a%0a\x1b HTTP/1.1\n", ("GET", "/a%0a\\x1b")),
        (b"GET /" + b"a" * 9000, ("-", "-")),
        (b"\x16\x03\x01\x02\x00", ("-", "-")),
    ],
)
def test_the_request_line_logged_is_method_and_path_without_query_or_headers(
    received: bytes, expected: tuple[str, str]
) -> None:
    assert request_line_of(received) == expected


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (LineTooLong(f"Authorization: Bearer {KEY}", "8190"), "longer than 8190 bytes"),
        (BadHttpMethod(f"G\x00T {KEY}"), "not a valid HTTP method"),
        (InvalidURLError(f"/v1/{KEY}\x00"), "not a valid URL"),
        (BadHttpMessage(f"Invalid character in Content-Length: {KEY}"), "is invalid"),
    ],
)
def test_a_refusal_says_what_was_wrong_without_quoting_the_request(
    error: BadHttpMessage, words: str
) -> None:
    message = refusal_message(error, 8190)
    assert words in message
    assert KEY not in message
    assert KEY in str(error)  # aiohttp's own message would have shown it
