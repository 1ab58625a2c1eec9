"""The token endpoint's answers: v3's hub_id and scopes, rotation, 429/5xx with Retry-After.

Pure parsing first, then `TokenEndpoint` against the fake HubSpot served in-process.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from fake_hubspot import FakeConfig, create_app
from fake_hubspot.app import TOKEN_PATH, TOKEN_V1_PATH
from fake_hubspot.auth import TokenFault
from fake_hubspot.config import RefreshGrant
from fake_hubspot.state import STATE
from worker.token_endpoint import (
    Granted,
    TokenAnswer,
    TokenEndpoint,
    Unavailable,
    parse_hub_id,
    parse_scopes,
)

CLIENT_SECRET = "client-secret-" + uuid4().hex
RT_1 = "refresh-one-" + uuid4().hex
RT_2 = "refresh-two-" + uuid4().hex
WRITE = "crm.objects.marketing_events.write"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(62515, "62515"), ("62515", "62515"), (" 7 ", "7"), (None, None), ("", None)],
)
def test_hub_id_is_read_as_a_portal_id_from_a_number_or_digits(value: Any, expected: Any) -> None:
    assert parse_hub_id(value) == expected


@pytest.mark.parametrize("value", [True, 0, -3, "abc", 1.5, ["1"], {"id": 1}])
def test_a_hub_id_that_is_not_a_portal_id_is_unknown(value: Any) -> None:
    assert parse_hub_id(value) is None


def test_scopes_are_read_from_a_list_or_a_space_separated_string_and_else_unknown() -> None:
    assert parse_scopes(["oauth", WRITE]) == frozenset({"oauth", WRITE})
    assert parse_scopes(f"oauth {WRITE}") == frozenset({"oauth", WRITE})
    assert parse_scopes([]) == frozenset()
    assert parse_scopes(None) is None
    assert parse_scopes(["oauth", 3]) is None
    assert parse_scopes({"oauth": True}) is None


async def refresh_at(
    path: str,
    refresh_token: str,
    *,
    grants: tuple[RefreshGrant, ...] = (),
    setup: Any = None,
    times: int = 1,
) -> list[TokenAnswer]:
    """Refresh `times` times with `refresh_token` against the in-process fake at `path`."""
    config = FakeConfig(oauth_client_secret=CLIENT_SECRET, refresh_tokens=grants)
    app = create_app(config)
    if setup is not None:
        setup(app[STATE].auth)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        endpoint = TokenEndpoint(
            session,
            str(server.make_url(path)),
            client_id="fake-client-id",
            client_secret=SecretStr(CLIENT_SECRET),
            timeout_s=2.0,
        )
        return [await endpoint.refresh(SecretStr(refresh_token)) for _ in range(times)]


async def test_a_v3_answer_carries_the_accounts_hub_id_and_the_granted_scopes() -> None:
    grant = RefreshGrant(RT_1, 4242, ("oauth", WRITE))
    [answer] = await refresh_at(TOKEN_PATH, RT_1, grants=(grant,))
    assert isinstance(answer, Granted)
    assert (answer.hub_id, answer.scopes) == ("4242", frozenset({"oauth", WRITE}))
    assert answer.new_refresh_token is None


async def test_the_v1_answer_has_neither_so_both_are_unknown() -> None:
    [answer] = await refresh_at(TOKEN_V1_PATH, RT_1, grants=(RefreshGrant(RT_1, 4242),))
    assert isinstance(answer, Granted)
    assert (answer.hub_id, answer.scopes) == (None, None)


async def test_a_rotation_answers_a_new_refresh_token_kept_secret_and_may_revoke_the_old() -> None:
    # Given the fake rotates portal 1's refresh token on its next refresh, revoking the old one
    def rotate(auth: Any) -> None:
        auth.rotate_next(1, revoke_old=True)

    # When eventq refreshes twice with the old one
    first, second = await refresh_at(
        TOKEN_PATH, RT_1, grants=(RefreshGrant(RT_1, 1),), setup=rotate, times=2
    )
    # Then the first answer carries the new refresh token (never shown), the second is refused
    assert isinstance(first, Granted)
    assert first.new_refresh_token is not None
    new = first.new_refresh_token.get_secret_value()
    assert new not in (RT_1, "")
    assert new not in repr(first)
    assert not isinstance(second, Granted)


async def test_a_rotation_that_keeps_the_old_refresh_token_leaves_both_working() -> None:
    def rotate(auth: Any) -> None:
        auth.rotate_next(1, revoke_old=False)

    first, second = await refresh_at(
        TOKEN_PATH, RT_1, grants=(RefreshGrant(RT_1, 1),), setup=rotate, times=2
    )
    assert isinstance(first, Granted)
    assert first.new_refresh_token is not None
    assert isinstance(second, Granted)
    assert second.new_refresh_token is None  # one rotation was asked for


@pytest.mark.parametrize(
    ("status", "headers", "wait_s"),
    [
        (429, {"Retry-After": "7"}, (7.0, 7.0)),
        (429, {}, (5.0, 5.0)),  # HubSpot does not promise Retry-After: eventq's default
        (503, {"Retry-After": "3"}, (3.0, 3.0)),
        (502, {}, (5.0, 5.0)),
        (429, {"Retry-After": "HTTP-DATE+9"}, (7.0, 9.0)),
    ],
)
async def test_a_429_or_5xx_is_unavailable_for_its_retry_after(
    status: int, headers: dict[str, str], wait_s: tuple[float, float]
) -> None:
    if headers.get("Retry-After") == "HTTP-DATE+9":
        headers = {"Retry-After": formatdate(time.time() + 9, usegmt=True)}

    def fail(auth: Any) -> None:
        auth.fail_next(TokenFault(status, headers, 1, portal_id=1))

    grants = (RefreshGrant(RT_1, 1), RefreshGrant(RT_2, 2))
    [other] = await refresh_at(TOKEN_PATH, RT_2, grants=grants, setup=fail)
    [held, after] = await refresh_at(TOKEN_PATH, RT_1, grants=grants, setup=fail, times=2)
    # Then only portal 1's refresh got the fault, for Retry-After (or 5 s), then it worked
    assert isinstance(other, Granted)
    assert isinstance(held, Unavailable)
    assert held.detail == f"token endpoint answered HTTP {status}"
    low, high = wait_s
    assert low <= held.retry_after_s <= high
    assert isinstance(after, Granted)
