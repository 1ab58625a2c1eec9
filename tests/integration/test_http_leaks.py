"""No key, cookie or forged line through the HTTP service: oversized headers that aiohttp's parser
refuses, control characters in paths and in event fields, in the text and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests

from eventq.logs import JsonFormatter, TextFormatter
from fake_hubspot.control import FakeHubSpot
from tests.conftest import Stack, valid_event
from tests.integration.helpers import wait_state
from tests.integration.http_support import PRODUCER_KEY, Api
from tests.integration.test_http_auth import login

PADDING = "A" * 9000  # over aiohttp's max_field_size (8,190 bytes)
FORGED = "FORGED LOG LINE eventq.attempt outcome=delivered"
_TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


@contextmanager
def both_log_formats() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Capture every logger at DEBUG, once in the text format and once in the JSON format."""
    text, lines = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text), logging.StreamHandler(lines)]
    handlers[0].setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers[1].setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.handlers.extend(handlers)
    try:
        yield text, lines
    finally:
        root.setLevel(level)
        for handler in handlers:
            root.removeHandler(handler)


def raw_request(base_url: str, head: bytes) -> bytes:
    """Send `head` as is over a socket; return the whole answer (the service closes after it)."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_no_key_cookie_or_forged_line_reaches_a_log_line_or_an_answer(service: str) -> None:
    cookie = login(service).cookies["eventq_session"]
    forged_event = {
        k: f"{v}\n{FORGED}" if isinstance(v, str) and "DateTime" not in k else v
        for k, v in valid_event("nl").items()
    }
    forged_event["customProperties"] = [{"name": "note\nx", "value": f"v\n{FORGED}"}]
    with both_log_formats() as (text, lines):
        # When a key and a live session cookie arrive in headers too large for the parser
        oversized_key = requests.get(
            service + "/v1/jobs/abc",
            headers={"Authorization": f"Bearer {PRODUCER_KEY}{PADDING}"},
            timeout=10,
        )
        oversized_cookie = requests.get(
            service + "/admin/session",
            headers={"Cookie": f"eventq_session={cookie}; pad={PADDING}"},
            timeout=10,
        )
        # and a request line with %0a (and a raw newline below the client library)
        encoded = Api(service).get(f"/v1/jobs/%0a{FORGED.replace(' ', '%20')}")
        raw = raw_request(service, f"GET /v1/jobs/x\n{FORGED} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # and an event with a newline in every string field
        accepted = Api(service).post("/v1/events", json=forged_event)

    # Then aiohttp's parser refusals are answered in our JSON shape, naming nothing sent
    answers = [oversized_key, oversized_cookie, encoded, accepted]
    assert [a.status_code for a in answers] == [400, 400, 404, 202]
    assert oversized_key.json()["error"] == oversized_cookie.json()["error"] == "malformed_request"
    assert "longer than 8190 bytes" in oversized_key.json()["message"]
    assert raw.split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert b'"malformed_request"' in raw
    bodies = "".join(a.text for a in answers) + raw.decode()
    # and no answer, and no log line in either format, holds the key, the cookie or a raw newline
    logged_text, logged_json = text.getvalue(), lines.getvalue()
    for output in (bodies, logged_text, logged_json):
        assert PRODUCER_KEY not in output
        assert cookie not in output
        assert f"\n{FORGED}" not in output
    assert all(_TEXT_LINE.match(line) for line in logged_text.splitlines()), logged_text
    assert [json.loads(line) for line in logged_json.splitlines()]
    # and the refusals are logged with the method and the path only
    assert "refused an unparsable request: GET /v1/jobs/abc 400" in logged_text
    assert "refused an unparsable request: GET /admin/session 400" in logged_text
    assert "GET /v1/jobs/\\x0aFORGED LOG LINE" in logged_text


def test_an_event_with_newlines_forges_no_line_in_the_worker_log(
    stack: Stack, api: Api, fake: FakeHubSpot
) -> None:
    # Given an event accepted with a forged log line in its external id and its name
    event = valid_event("nl", externalEventId=f"nl-1\n{FORGED}", eventName=f"n\r\n{FORGED}")
    job_id = api.post("/v1/events", json=event).json()["jobId"]
    # When a worker (text log format) delivers it
    stack.start_worker(concurrency=2)
    wait_state(stack, job_id, "delivered", timeout_s=20)
    # Then every line of the worker's log is a line the worker wrote, the id escaped in it
    assert fake.events()[0]["body"]["externalEventId"] == f"nl-1\n{FORGED}"
    log = stack.log_text()
    assert "externalEventId=nl-1\\x0aFORGED LOG LINE" in log
    assert not [line for line in log.splitlines() if line.startswith("FORGED")]
