"""A fuzz test of the HTTP routes below the client library: 1,000 requests written byte by byte to
a socket, with invalid bytes in the request line, the headers and the body. None may answer 500,
and none may leave a traceback in the service log."""

from __future__ import annotations

import json
import logging
import random
import socket
from urllib.parse import urlsplit

import pytest

from tests.conftest import valid_event
from tests.integration.http_support import ADMIN_KEY, PRODUCER_KEY

CASES = 1000
SEED = 15  # fixed: a failure is replayed by running the test again
ANSWER_TIMEOUT_S = 0.5  # a declared body longer than the one sent is awaited: give up on it
ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/events/batch"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/dead-letters/{id}"),
    ("DELETE", "/v1/dead-letters/{id}"),
    ("POST", "/v1/dead-letters/replay"),
    ("GET", "/v1/audit"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/admin/"),
    ("POST", "/admin/login"),
    ("GET", "/admin/session"),
]
# bytes no parser accepts there (controls, bare `%`, spaces, raw non-ASCII in a path) ...
ODD_BYTES = [
    b"\x00",
    b"\r",
    b"\n",
    b"\x7f",
    b"\xff",
    b"\xc3(",
    b"%",
    b" ",
    b"\t",
    b"\\",
    b"\xe2\x80\xa8",
    "é".encode(),
]
# ... and bytes a parser passes on, that our code must cope with (encoded controls, key syntax)
ODD_BUT_VALID = [
    b"%ff",
    b"%00",
    b"%0a",
    b"%0d%0a",
    b"..",
    b"*",
    b":",
    b"?",
    b"#",
    b"%e2%80%a8",
    b"%c3%28",
    b'"',
    b"'",
    b"<script>",
    b"{",
    b";",
    b",",
    b"=",
    b"~",
    b"%25",
]
METHODS = [
    b"GET",
    b"POST",
    b"DELETE",
    b"PUT",
    b"PATCH",
    b"OPTIONS",
    b"HEAD",
    b"TRACE",
    b"get",
    b"G\x00T",
    b"CONNECT",
    b"BREW",
]


def _odd(rng: random.Random, length: int = 8) -> bytes:
    """Return a few odd bytes: one time in three, some that no parser should accept."""
    pool = ODD_BYTES + ODD_BUT_VALID if rng.random() < 1 / 3 else ODD_BUT_VALID
    return b"".join(rng.choice(pool) for _ in range(rng.randint(1, length)))


def _path(rng: random.Random, template: str) -> bytes:
    path = template.replace("{id}", rng.choice(["abc", "0f3c" * 8, "x:lock", "*", "..", ""]))
    raw = path.encode()
    roll = rng.random()
    if roll < 0.4:  # odd bytes inside the path or in a query string
        cut = rng.randint(0, len(raw))
        raw = raw[:cut] + _odd(rng) + raw[cut:]
    elif roll < 0.5:
        raw += b"?" + _odd(rng) + b"=" + _odd(rng)
    elif roll < 0.55:
        raw = b"/" + b"a" * rng.choice([300, 9000])  # past the request-line limit
    return raw


def _body(rng: random.Random) -> bytes:
    event = valid_event(rng.randint(0, 9))
    choice = rng.randrange(6)
    if choice == 0:
        return json.dumps(event).encode()
    if choice == 1:  # a string field holding odd characters
        field = rng.choice(list(event))
        event[field] = _odd(rng).decode("utf-8", "surrogateescape")
        return json.dumps(event, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogateescape")
    if choice == 2:
        return json.dumps(
            {"events": [event] * rng.randint(0, 3), "ids": [_odd(rng).hex()]}
        ).encode()
    if choice == 3:
        return _odd(rng, 40)
    if choice == 4:
        return b'{"events": [' * rng.randint(1, 200)
    return json.dumps(rng.choice([[], None, 1, "x", {"": {}}, {"ids": ["*", ".."]}])).encode()


def _headers(rng: random.Random, body: bytes) -> list[bytes]:
    key = rng.choice([PRODUCER_KEY, ADMIN_KEY, ADMIN_KEY, "", "x" * 20])
    headers = [b"Host: 127.0.0.1", b"Connection: close", f"Authorization: Bearer {key}".encode()]
    content_type = rng.choice(
        [b"application/json"] * 6 + [b"application/x-www-form-urlencoded", b"text/plain", b""]
    )
    if rng.random() < 0.05:
        content_type = _odd(rng)
    headers.append(b"Content-Type: " + content_type)
    roll = rng.random()
    if roll < 0.85:
        headers.append(b"Content-Length: %d" % len(body))
    elif roll < 0.9:
        headers.append(b"Content-Length: " + rng.choice([b"-1", b"1e3", b"99999999999", b"0x10"]))
    elif roll < 0.95:
        headers.append(b"Transfer-Encoding: " + rng.choice([b"chunked", b"gzip", b"chunked, x"]))
    for _ in range(rng.choice([0, 0, 0, 1, 2])):  # odd header names and values
        name = rng.choice(
            [b"X-Request-Id", b"Idempotency-Key", b"Origin", b"Cookie", b"X-" + _odd(rng)]
        )
        headers.append(name + b": " + _odd(rng, 20))
    if rng.random() < 0.05:
        headers.append(b"X-Big: " + b"A" * 9000)
    return headers


def fuzz_case(rng: random.Random) -> bytes:
    """Return one raw request: a route's method and path, headers and a body, some of it odd."""
    method, template = rng.choice(ROUTES)
    raw_method = method.encode() if rng.random() < 0.8 else rng.choice(METHODS)
    body = _body(rng) if raw_method != b"GET" or rng.random() < 0.2 else b""
    version = b"HTTP/1.1" if rng.random() < 0.95 else rng.choice([b"HTTP/1.0", b"HTTP/9.9", b"HTP"])
    line = raw_method + b" " + _path(rng, template) + b" " + version
    return b"\r\n".join([line, *_headers(rng, body), b"", body])


def send(address: tuple[str, int], request: bytes) -> bytes:
    """Send `request` on a new connection; return the answer's first line (b"" if none)."""
    with socket.create_connection(address, timeout=ANSWER_TIMEOUT_S) as sock:
        answer = b""
        try:
            sock.sendall(request)
            while b"\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass  # a refusal may close before reading it all; a short body waits for more
    return answer.split(b"\r\n", 1)[0]


def test_a_thousand_malformed_requests_get_no_500_and_no_traceback(
    service: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    address = urlsplit(service)
    target = (str(address.hostname), int(address.port or 80))
    rng = random.Random(SEED)
    # When 1,000 requests with odd bytes in every part are sent below the client library
    statuses: dict[int, int] = {}
    five_hundreds = []
    for _ in range(CASES):
        request = fuzz_case(rng)
        first_line = send(target, request)
        status = int(first_line.split(b" ")[1]) if first_line.startswith(b"HTTP/1.") else 0
        statuses[status] = statuses.get(status, 0) + 1
        if status >= 500 and status != 503:
            five_hundreds.append(request[:300])
    # Then none was answered 500, and the service logged no traceback nor unexpected error
    assert five_hundreds == [], statuses
    assert statuses.get(0, 0) < CASES // 10, statuses  # almost every request got an answer
    assert len([s for s in statuses if 400 <= s < 500]) >= 5, statuses  # the cases vary
    logged = [r for r in caplog.records if r.exc_info or "unexpected error" in r.getMessage()]
    assert logged == []
