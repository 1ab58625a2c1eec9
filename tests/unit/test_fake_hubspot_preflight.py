"""The fake's routes for `eventq doctor` and the contract suite, in-process over loopback: the
event-lists GET (guarded by the write scope), DELETE by external ids, and token introspection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from fake_hubspot import FakeConfig, create_app
from fake_hubspot.app import STATE
from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE, RefreshGrant

WRITER, READER = "writer-token-1", "reader-token-1"
EVENTS = "/marketing/v3/marketing-events/events"
LISTS = "/marketing/v3/marketing-events/associations/acct-1/{event}/lists"
CLIENT = {"client_id": "fake-client-id", "client_secret": "fake-client-secret"}
BODY = {
    "externalAccountId": "acct-1",
    "externalEventId": "ev-1",
    "eventName": "Launch",
    "eventOrganizer": "Acme",
    "customProperties": [],
}


@pytest.fixture
async def http() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    config = FakeConfig(
        tokens=(WRITER,),
        token_scopes=(WRITE_SCOPE,),
        refresh_tokens=(RefreshGrant("refresh-1", 4242),),
    )
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    app[STATE].auth.add_static_token(READER, "reader", [READ_SCOPE])
    async with aiohttp.ClientSession() as session:
        yield session, str(server.make_url("")).rstrip("/")
    await server.close()


async def call(
    http: tuple[aiohttp.ClientSession, str],
    method: str,
    path: str,
    token: str | None = WRITER,
    **kwargs: Any,
) -> tuple[int, Any]:
    session, base = http
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, base + path, headers=headers, **kwargs) as answer:
        text = await answer.text()
        return answer.status, (await answer.json()) if text else None


async def test_the_lists_of_an_unknown_event_are_a_404_and_of_a_known_one_empty(http: Any) -> None:
    assert (await call(http, "GET", LISTS.format(event="nope")))[0] == 404
    assert (await call(http, "POST", EVENTS, json=BODY))[0] == 200

    status, body = await call(http, "GET", LISTS.format(event="ev-1"))

    assert (status, body) == (200, {"total": 0, "results": []})


async def test_the_lists_get_needs_the_write_scope_and_a_known_token(http: Any) -> None:
    status, body = await call(http, "GET", LISTS.format(event="x"), token=READER)
    assert status == 403
    assert body["category"] == "MISSING_SCOPES"

    assert (await call(http, "GET", LISTS.format(event="x"), token="unknown"))[0] == 401


async def test_delete_by_external_ids_is_204_once_then_404(http: Any) -> None:
    await call(http, "POST", EVENTS, json=BODY)
    query = {"externalAccountId": "acct-1"}

    first = await call(http, "DELETE", f"{EVENTS}/ev-1", params=query)
    second = await call(http, "DELETE", f"{EVENTS}/ev-1", params=query)

    assert first == (204, None)
    assert second[0] == 404
    assert (await call(http, "GET", LISTS.format(event="ev-1")))[0] == 404


async def test_introspection_tells_an_access_tokens_hub_and_scopes(http: Any) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "refresh-1", **CLIENT}
    _, granted = await call(http, "POST", "/oauth/v3/token", token=None, data=form)
    access = granted["access_token"]
    form = {**CLIENT, "token_type_hint": "access_token", "access_token": access}

    status, answer = await call(http, "POST", "/oauth/v3/token/introspect", token=None, data=form)

    assert status == 200
    assert answer["active"] is True
    assert answer["hub_id"] == 4242
    assert answer["token_use"] == "access_token"
    assert WRITE_SCOPE in answer["scopes"]
    assert 0 < answer["expires_in"] <= 1800


async def test_introspection_of_a_refresh_token_and_of_an_unknown_one(http: Any) -> None:
    known = {**CLIENT, "token_type_hint": "refresh_token", "refresh_token": "refresh-1"}
    unknown = {**CLIENT, "token": "who-knows"}

    _, answer = await call(http, "POST", "/oauth/v3/token/introspect", token=None, data=known)
    assert (answer["active"], answer["token_use"], answer["hub_id"]) == (
        True,
        "refresh_token",
        4242,
    )
    _, answer = await call(http, "POST", "/oauth/v3/token/introspect", token=None, data=unknown)
    assert answer == {"active": False}


async def test_introspection_refuses_a_wrong_client_secret(http: Any) -> None:
    form = {**CLIENT, "client_secret": "wrong", "token": "refresh-1"}

    status, answer = await call(http, "POST", "/oauth/v3/token/introspect", token=None, data=form)

    assert status == 400
    assert answer["error"] == "invalid_client"
