"""worker.hubspot_client against a small aiohttp app on loopback: the one status → result table.

The app answers each status and shape HubSpot may send, drops connections and stalls; the
client must turn every one of them into data (never an exception) and never quote the token.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound
from worker.hubspot_client import EVENTS_PATH, HubSpotClient, new_session

TOKEN = "pat-na1-secret-token"
BODY = {"externalAccountId": "acc 1", "externalEventId": "ev/1", "eventName": "Launch"}


@dataclass
class Answer:
    """What the app answers next: status, raw text, headers; or a stall or a dropped socket."""

    status: int = 200
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0
    drop: bool = False


@dataclass
class App:
    answer: Answer = field(default_factory=Answer)
    seen: list[web.Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        await request.read()
        if self.answer.drop:
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
        if self.answer.stall_s:
            await asyncio.sleep(self.answer.stall_s)
        return web.Response(
            status=self.answer.status, text=self.answer.text, headers=self.answer.headers
        )


@pytest.fixture
async def app() -> AsyncIterator[tuple[App, str]]:
    state = App()
    application = web.Application()
    application.router.add_route("*", "/{tail:.*}", state.handle)
    server = TestServer(application, host="127.0.0.1")
    await server.start_server()
    yield state, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def client(app: tuple[App, str]) -> AsyncIterator[HubSpotClient]:
    session = new_session(connect_timeout_s=1.0, read_timeout_s=0.5, max_connections=4)
    yield HubSpotClient(session, app[1])
    await session.close()


Call = Callable[[HubSpotClient], Any]
POST: Call = lambda c: c.create(BODY, TOKEN)  # noqa: E731
PUT: Call = lambda c: c.upsert(BODY, TOKEN)  # noqa: E731
GET: Call = lambda c: c.find("acc 1", "ev/1", TOKEN)  # noqa: E731
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("call", "answer", "expected"),
    [
        # create and upsert: any 2xx is the event existing, with its id if the answer has one
        (POST, Answer(201, '{"id": "11"}', JSON), Created("11")),
        (POST, Answer(200, '{"objectId": 12}', JSON), Created("12")),
        (PUT, Answer(200, '{"id": "13", "objectId": "x"}', JSON), Created("13")),
        (POST, Answer(204, ""), Created(None)),
        # the existence check: 200 with an id is found, 404 is not found, the rest failures
        (GET, Answer(200, '{"id": "14"}', JSON), Found("14")),
        (GET, Answer(404, '{"message": "not found"}', JSON), NotFound()),
        (GET, Answer(200, "{}", JSON), HttpFailure(200, {})),
        # errors keep HubSpot's body; a 404 to a write is no "not found"
        (
            POST,
            Answer(400, '{"message": "bad", "category": "VALIDATION_ERROR"}', JSON),
            HttpFailure(400, {"message": "bad", "category": "VALIDATION_ERROR"}),
        ),
        (POST, Answer(404, ""), HttpFailure(404, {})),
        (
            GET,
            Answer(403, '{"category": "MISSING_SCOPES"}'),
            HttpFailure(403, {"category": "MISSING_SCOPES"}),
        ),
        (PUT, Answer(423, '{"message": "locked"}'), HttpFailure(423, {"message": "locked"})),
        # a body that is no JSON object becomes a message
        (
            POST,
            Answer(502, "<html>Bad gateway</html>"),
            HttpFailure(502, {"message": "<html>Bad gateway</html>"}),
        ),
        (POST, Answer(500, '["a", "b"]'), HttpFailure(500, {"message": "['a', 'b']"})),
    ],
)
async def test_each_answer_maps_to_one_result(
    client: HubSpotClient, app: tuple[App, str], call: Call, answer: Answer, expected: AttemptResult
) -> None:
    app[0].answer = answer
    result = await call(client)
    assert type(result) is type(expected)
    if isinstance(expected, Created | Found):
        assert isinstance(result, Created | Found)
        assert result.object_id == expected.object_id
    if isinstance(expected, HttpFailure):
        assert isinstance(result, HttpFailure)
        assert (result.status, dict(result.body)) == (expected.status, dict(expected.body))


async def test_a_429_keeps_its_headers_and_policy_for_the_decision(
    client: HubSpotClient, app: tuple[App, str]
) -> None:
    app[0].answer = Answer(
        429,
        '{"policyName": "DAILY", "correlationId": "c-1"}',
        {"Retry-After": "3", "X-HubSpot-RateLimit-Remaining": "0"},
    )
    result = await client.create(BODY, TOKEN)
    assert isinstance(result, HttpFailure)
    assert (result.policy_name, result.correlation_id) == ("DAILY", "c-1")
    assert result.headers["Retry-After"] == "3"
    assert result.headers["X-HubSpot-RateLimit-Remaining"] == "0"


async def test_each_request_goes_to_its_url_with_the_bearer_token(
    client: HubSpotClient, app: tuple[App, str]
) -> None:
    app[0].answer = Answer(200, '{"id": "1"}', JSON)
    await client.create(BODY, TOKEN)
    await client.upsert(BODY, TOKEN)
    await client.find("acc 1", "ev/1", TOKEN)
    post, put, get = app[0].seen
    assert (post.method, post.path) == ("POST", EVENTS_PATH)
    assert (put.method, put.raw_path) == ("PUT", f"{EVENTS_PATH}/ev%2F1")
    assert (get.method, get.raw_path) == ("GET", f"{EVENTS_PATH}/ev%2F1?externalAccountId=acc%201")
    assert {r.headers["Authorization"] for r in app[0].seen} == {f"Bearer {TOKEN}"}
    assert post.headers["Content-Type"] == "application/json"


async def test_a_stalled_answer_is_a_timeout_that_may_have_been_sent(
    client: HubSpotClient, app: tuple[App, str]
) -> None:
    app[0].answer = Answer(200, '{"id": "1"}', stall_s=2.0)
    result = await client.create(BODY, TOKEN)
    assert isinstance(result, NetworkFailure)
    assert (result.kind, result.sent) == ("timeout", True)
    assert TOKEN not in result.detail
    assert result.detail.endswith(f" to 127.0.0.1:{URL(app[1]).port}")


async def test_a_dropped_connection_may_have_been_sent(
    client: HubSpotClient, app: tuple[App, str]
) -> None:
    app[0].answer = Answer(drop=True)
    result = await client.upsert(BODY, TOKEN)
    assert isinstance(result, NetworkFailure)
    assert result.kind == "disconnected"  # aiohttp: ServerDisconnectedError
    assert result.sent
    assert TOKEN not in result.detail


async def test_a_refused_connection_was_never_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session = new_session(connect_timeout_s=1.0, read_timeout_s=1.0, max_connections=1)
    try:
        result = await HubSpotClient(session, f"http://127.0.0.1:{port}").create(BODY, TOKEN)
    finally:
        await session.close()
    assert isinstance(result, NetworkFailure)
    assert (result.kind, result.sent) == ("connect", False)
    assert TOKEN not in result.detail
    # the detail names the host and port it could not reach
    assert result.detail == f"ClientConnectorError to 127.0.0.1:{port}"


async def test_a_name_that_does_not_resolve_names_the_host_and_the_default_port() -> None:
    session = new_session(connect_timeout_s=1.0, read_timeout_s=1.0, max_connections=1)
    try:
        client = HubSpotClient(session, "https://no-such-host.invalid")
        result = await client.create(BODY, TOKEN)
    finally:
        await session.close()
    assert isinstance(result, NetworkFailure)
    assert result.kind == "connect"
    assert result.detail == "ClientConnectorDNSError to no-such-host.invalid:443"
