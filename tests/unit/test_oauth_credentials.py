"""OAuth credentials against the real Redis (`real_redis_pools`), with a scripted token endpoint.

Several `OAuthCredentials`, each with its own Redis connection pool, stand for worker processes.
The token endpoint itself is tested against the fake HubSpot served in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
import redis.asyncio
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from eventq.accounts import AccountsWatcher
from eventq.settings import RateLimit, load_settings
from fake_hubspot import FakeConfig, create_app
from fake_hubspot.app import TOKEN_PATH
from fake_hubspot.config import DEFAULT_SCOPES, RefreshGrant
from fake_hubspot.state import STATE
from worker.attempts import HttpFailure
from worker.credentials import (
    AccessToken,
    CredentialsError,
    CredentialsUnavailable,
    describe_auth_failure,
    is_expired_token,
)
from worker.oauth import OAuthCredentials
from worker.rate_limit import RateLimiter
from worker.token_endpoint import (
    Granted,
    Rejected,
    TokenAnswer,
    TokenEndpoint,
    Unavailable,
)

CLIENT_SECRET = "client-secret-" + uuid4().hex
RT_1 = "refresh-one-" + uuid4().hex
RT_2 = "refresh-two-" + uuid4().hex
WRITE_SCOPE = "crm.objects.marketing_events.write"


class ScriptedEndpoint:
    """Stands for HubSpot's token endpoint: counts refreshes per refresh token.

    `hub_ids` (refresh token -> hub_id answered), `rotations` (refresh token -> the new refresh
    token answered) and `scopes` shape the granted answers.
    """

    def __init__(self, lifetime_s: float = 30.0, delay_s: float = 0.05) -> None:
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s
        self.calls: list[str] = []
        self.rejected: dict[str, TokenAnswer] = {}
        self.hub_ids: dict[str, str] = {}
        self.rotations: dict[str, str] = {}
        self.scopes: frozenset[str] | None = None

    async def refresh(self, refresh_token: SecretStr) -> TokenAnswer:
        secret = refresh_token.get_secret_value()
        self.calls.append(secret)
        await asyncio.sleep(self.delay_s)  # long enough for other workers to pile up
        if secret in self.rejected:
            return self.rejected[secret]
        token = f"access-{len(self.calls)}-{uuid4().hex}"
        rotated = self.rotations.get(secret)
        return Granted(
            SecretStr(token),
            self.lifetime_s,
            hub_id=self.hub_ids.get(secret),
            scopes=self.scopes,
            new_refresh_token=None if rotated is None else SecretStr(rotated),
        )

    def count(self, refresh_token: str) -> int:
        return self.calls.count(refresh_token)


@pytest.fixture
async def real_redis_pools(
    real_redis_url: str, key_prefix: str
) -> AsyncIterator[list[redis.asyncio.Redis]]:
    """Three connection real_redis_pools to the real Redis, one per worker process."""
    conns = [redis.asyncio.Redis.from_url(real_redis_url) for _ in range(3)]
    yield conns
    for conn in conns:
        await conn.aclose()


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({"1": RT_1, "2": RT_2}))
    return path


def workers(
    real_redis_pools: list[redis.asyncio.Redis],
    key_prefix: str,
    endpoint: ScriptedEndpoint,
    accounts_file: Path,
    margin_s: float = 1.0,
) -> list[OAuthCredentials]:
    settings = load_settings(
        oauth_client_id="client-1",
        oauth_client_secret=CLIENT_SECRET,
        oauth_accounts_file=accounts_file,
        default_portal_id="1",
        key_prefix=key_prefix,
    )
    return [
        OAuthCredentials(
            redis=conn,
            endpoint=endpoint,  # type: ignore[arg-type]
            accounts=AccountsWatcher(settings, check_every_s=0.0),
            limiter=RateLimiter(conn, prefix=key_prefix, limit=settings.rate_limit),
            account_limit=RateLimit(110, 10.0),
            key_prefix=key_prefix,
            margin_s=margin_s,
            timeout_s=2.0,
        )
        for conn in real_redis_pools
    ]


async def tokens_from_all(creds: list[OAuthCredentials], portal: str | None, n: int) -> list[Any]:
    calls = [creds[i % len(creds)].token_for(portal) for i in range(n)]
    return await asyncio.gather(*calls, return_exceptions=True)


def values(tokens: list[Any]) -> set[str]:
    return {t.value.get_secret_value() for t in tokens if isinstance(t, AccessToken)}


async def test_sixty_concurrent_requests_in_three_workers_cause_one_refresh(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given three workers and no token yet
    endpoint = ScriptedEndpoint()
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    # When 60 jobs of the default account ask at once
    tokens = await tokens_from_all(creds, None, 60)
    # Then HubSpot was asked once and every job got that token, in the account's bucket
    assert endpoint.count(RT_1) == 1
    assert len(values(tokens)) == 1
    assert {t.bucket for t in tokens} == {"portal:1"}
    assert {t.portal_id for t in tokens} == {"1"}


async def test_a_token_is_refreshed_once_ahead_of_its_expiry(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given tokens living 2 s, refreshed 1 s early
    endpoint = ScriptedEndpoint(lifetime_s=2.0)
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file, margin_s=1.0)
    first = values(await tokens_from_all(creds, "1", 3))
    # When the refresh margin is reached and 30 jobs ask at once
    await asyncio.sleep(1.1)
    during = await tokens_from_all(creds, "1", 30)
    after = values(await tokens_from_all(creds, "1", 3))
    # Then there was exactly one more refresh; jobs used the old (still valid) or the new one
    assert endpoint.count(RT_1) == 2
    assert values(during) <= first | after
    assert after.isdisjoint(first)


async def test_an_expired_token_401_causes_one_refresh_and_a_replaced_token_none(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given a token that has been in use for over a second
    endpoint = ScriptedEndpoint()
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    old = await creds[0].token_for("1")
    await asyncio.sleep(1.05)
    # When HubSpot says it expired to jobs in all three workers
    retry = await asyncio.gather(*(c.refresh_after_401(old) for c in creds))
    tokens = await tokens_from_all(creds, "1", 30)
    # Then each job retries at once, and one refresh served them all
    assert retry == [True, True, True]
    assert endpoint.count(RT_1) == 2
    assert values(tokens) == values([await creds[0].token_for("1")])
    assert old.value.get_secret_value() not in values(tokens)
    # and a late 401 for the old token does not throw the new one away
    assert await creds[1].refresh_after_401(old)
    await tokens_from_all(creds, "1", 3)
    assert endpoint.count(RT_1) == 2


async def test_a_token_reported_expired_right_after_it_was_issued_is_not_refreshed_again(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()
    [cred, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    token = await cred.token_for("1")
    assert await cred.refresh_after_401(token) is False
    assert endpoint.count(RT_1) == 1


async def test_invalid_grant_pauses_only_that_account_until_its_refresh_token_changes(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given HubSpot rejects account 1's refresh token
    endpoint = ScriptedEndpoint()
    endpoint.rejected[RT_1] = Rejected("invalid_grant", 400, "missing or unknown refresh token")
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    # When 20 jobs of each account ask at once
    one, two = await asyncio.gather(
        tokens_from_all(creds, "1", 20), tokens_from_all(creds, "2", 20)
    )
    # Then account 1's jobs get a CredentialsError saying what to do, after one refusal
    assert endpoint.count(RT_1) == 1
    assert all(isinstance(e, CredentialsError) for e in one)
    message = str(one[0])
    assert message.startswith("refresh token for portal 1 was rejected (invalid_grant")
    assert "re-authorize the app for this account" in message
    assert "EVENTQ_OAUTH_ACCOUNTS_FILE" in message
    assert "`eventq dlq replay --all --reason auth`" in message
    assert RT_1 not in message
    # and account 2 is unaffected
    assert len(values(two)) == 1
    # When an admin puts a new refresh token for account 1 in the file
    new_rt = "refresh-one-rotated-" + uuid4().hex
    rotated = accounts_file.with_suffix(".new")
    rotated.write_text(json.dumps({"1": new_rt, "2": RT_2}))
    os.replace(rotated, accounts_file)
    # Then account 1 works again, with the new refresh token
    token = await creds[2].token_for("1")
    assert token.portal_id == "1"
    assert endpoint.count(new_rt) == 1
    assert len(values(await tokens_from_all(creds, "1", 6))) == 1


async def test_an_unavailable_token_endpoint_makes_jobs_wait_without_asking_again(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()
    endpoint.rejected[RT_1] = Unavailable("token endpoint answered HTTP 503", 2.0)
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    answers = await tokens_from_all(creds, "1", 10)
    assert all(isinstance(a, CredentialsUnavailable) for a in answers)
    assert all(0.1 <= a.retry_after_s <= 2.0 for a in answers)
    assert endpoint.count(RT_1) == 1


async def test_a_due_token_keeps_working_while_the_token_endpoint_is_down(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given a token due for refresh (2 s life, 1 s margin) and a token endpoint that is down
    endpoint = ScriptedEndpoint(lifetime_s=2.0)
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file, margin_s=1.0)
    old = await creds[0].token_for("1")
    await asyncio.sleep(1.1)
    endpoint.rejected[RT_1] = Unavailable("token endpoint answered HTTP 503", 5.0)
    # When jobs in every worker ask
    during = await tokens_from_all(creds, "1", 12)
    # Then they keep sending with the old token, and HubSpot was asked once more, not 12 times
    assert values(during) == {old.value.get_secret_value()}
    assert endpoint.count(RT_1) == 2
    # and once it has expired, jobs wait instead of being dead-lettered
    await asyncio.sleep(1.0)
    with pytest.raises(CredentialsUnavailable):
        await creds[1].token_for("1")
    assert endpoint.count(RT_1) == 2


async def test_an_unknown_portal_is_a_credentials_error_naming_portal_id(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()
    [cred, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    with pytest.raises(CredentialsError) as caught:
        await cred.token_for("999")
    assert str(caught.value).startswith("portalId '999' is not a configured HubSpot account")
    assert endpoint.calls == []


async def test_each_account_spends_from_its_own_bucket_with_the_account_budget(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    [cred, *_] = workers(real_redis_pools, key_prefix, ScriptedEndpoint(), accounts_file)
    token = await cred.token_for("2")
    state = await RateLimiter(
        real_redis_pools[1], prefix=key_prefix, limit=RateLimit(5, 1.0)
    ).state(token.bucket)
    assert token.bucket == "portal:2"
    assert (state.budget, state.window_s) == (110, 10.0)


async def test_redis_holds_the_access_token_only_in_its_cache_key_and_never_a_refresh_token(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()
    endpoint.rejected[RT_2] = Rejected("invalid_grant", 400, "missing or unknown refresh token")
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    access = (await creds[0].token_for("1")).value.get_secret_value()
    with pytest.raises(CredentialsError):
        await creds[0].token_for("2")  # leaves a pause record in Redis
    dump = await dump_prefix(real_redis_pools[0], key_prefix)
    for key, value in dump.items():
        for secret in (RT_1, RT_2, CLIENT_SECRET):
            assert secret not in value, key
        if access in value:
            assert key == f"{key_prefix}:oauth:1:token"


async def dump_prefix(conn: redis.asyncio.Redis, key_prefix: str) -> dict[str, str]:
    found: dict[str, str] = {}
    async for raw in conn.scan_iter(match=f"{key_prefix}:*", count=10_000):
        key = raw.decode()
        kind = (await conn.type(key)).decode()
        if kind == "string":
            found[key] = str(await conn.get(key))
        elif kind == "hash":
            found[key] = str(await conn.hgetall(key))
        elif kind == "zset":
            found[key] = str(await conn.zrange(key, 0, -1))
        elif kind == "list":
            found[key] = str(await conn.lrange(key, 0, -1))
    return found


async def test_the_token_endpoint_maps_hubspots_answers_to_typed_results() -> None:
    # Given the fake HubSpot in-process, with one good and one revoked refresh token
    config = FakeConfig(
        oauth_client_secret=CLIENT_SECRET,
        refresh_tokens=(RefreshGrant(RT_1, 1), RefreshGrant(RT_2, 2)),
        access_token_lifetime_s=5.0,
    )
    app = create_app(config)
    app[STATE].auth.revoke(RT_2)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url(TOKEN_PATH))

        def endpoint(secret: str = CLIENT_SECRET) -> TokenEndpoint:
            return TokenEndpoint(
                session,
                url,
                client_id="fake-client-id",
                client_secret=SecretStr(secret),
                timeout_s=2.0,
            )

        granted = await endpoint().refresh(SecretStr(RT_1))
        revoked = await endpoint().refresh(SecretStr(RT_2))
        bad_client = await endpoint("wrong").refresh(SecretStr(RT_1))
    closed = TokenEndpoint(
        aiohttp.ClientSession(),
        url,
        client_id="fake-client-id",
        client_secret=SecretStr(CLIENT_SECRET),
        timeout_s=1.0,
    )
    try:
        unreachable = await closed.refresh(SecretStr(RT_1))
    finally:
        await closed._session.close()
    assert isinstance(granted, Granted)
    assert granted.expires_in_s == 5.0
    assert granted.new_refresh_token is None
    assert granted.hub_id == "1"
    assert granted.scopes == frozenset(DEFAULT_SCOPES)
    assert revoked == Rejected("invalid_grant", 400, "missing or unknown refresh token")
    assert isinstance(bad_client, Rejected)
    assert bad_client.kind == "invalid_client"
    assert isinstance(unreachable, Unavailable)
    for answer in (granted, revoked, bad_client, unreachable):
        assert RT_1 not in repr(answer)
        assert CLIENT_SECRET not in repr(answer)


async def test_a_second_client_secret_is_used_when_hubspot_refuses_the_first() -> None:
    # Given HubSpot knows only the new client secret, and eventq has the old one first
    config = FakeConfig(oauth_client_secret=CLIENT_SECRET, refresh_tokens=(RefreshGrant(RT_1, 1),))
    app = create_app(config)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        endpoint = TokenEndpoint(
            session,
            str(server.make_url(TOKEN_PATH)),
            client_id="fake-client-id",
            client_secret=SecretStr("old-secret"),
            next_client_secret=SecretStr(CLIENT_SECRET),
            timeout_s=2.0,
        )
        # When it refreshes twice
        first = await endpoint.refresh(SecretStr(RT_1))
        second = await endpoint.refresh(SecretStr(RT_1))
    # Then both succeed, and only the first refresh tried the old secret
    assert isinstance(first, Granted)
    assert isinstance(second, Granted)
    assert [r["status"] for r in app[STATE].recorder.since(0)] == [400, 200, 200]


async def test_concurrent_refreshes_refused_on_the_old_secret_both_end_on_the_new_one() -> None:
    # Given HubSpot knows only the new client secret, eventq has the old one first, and two
    # portals refresh at the same time (each is refused on the old secret before either retries)
    grants = (RefreshGrant(RT_1, 1), RefreshGrant(RT_2, 2))
    config = FakeConfig(oauth_client_secret=CLIENT_SECRET, refresh_tokens=grants)
    app = create_app(config)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        endpoint = TokenEndpoint(
            session,
            str(server.make_url(TOKEN_PATH)),
            client_id="fake-client-id",
            client_secret=SecretStr("old-secret"),
            next_client_secret=SecretStr(CLIENT_SECRET),
            timeout_s=2.0,
        )
        # When both refresh concurrently, then one refreshes again
        answers = await asyncio.gather(
            endpoint.refresh(SecretStr(RT_1)), endpoint.refresh(SecretStr(RT_2))
        )
        later = await endpoint.refresh(SecretStr(RT_1))
    # Then both got a token on their second try, and the new secret is now tried first
    assert all(isinstance(answer, Granted) for answer in answers)
    assert isinstance(later, Granted)
    assert sorted(r["status"] for r in app[STATE].recorder.since(0)) == [200, 200, 200, 400, 400]


def test_a_missing_scope_403_names_the_scope_and_what_to_do() -> None:
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call.",
        "category": "MISSING_SCOPES",
        "errors": [{"context": {"requiredGranularScopes": [WRITE_SCOPE]}}],
    }
    message = describe_auth_failure(HttpFailure(403, body), "42")
    assert message.startswith(f"missing scope {WRITE_SCOPE}: the token of portal 42")
    assert "`eventq dlq replay --all --reason auth`" in message
    bare = describe_auth_failure(HttpFailure(403, {"category": "MISSING_SCOPES"}), None)
    assert WRITE_SCOPE in bare
    assert "private app" in bare


def test_other_401_and_403_keep_hubspots_message() -> None:
    failure = HttpFailure(401, {"message": "Authentication credentials not found."})
    assert describe_auth_failure(failure, "1") == "Authentication credentials not found."
    assert describe_auth_failure(HttpFailure(403, {"message": "no"}), "1") == "no"


def test_only_an_expired_authentication_401_counts_as_an_expired_token() -> None:
    assert is_expired_token(HttpFailure(401, {"category": "EXPIRED_AUTHENTICATION"}))
    assert not is_expired_token(HttpFailure(401, {"category": "INVALID_AUTHENTICATION"}))
    assert not is_expired_token(HttpFailure(403, {"category": "EXPIRED_AUTHENTICATION"}))


INVALID_GRANT = Rejected("invalid_grant", 400, "missing or unknown refresh token")


def rewrite_accounts(accounts_file: Path, accounts: dict[str, str]) -> None:
    staged = accounts_file.with_suffix(".new")
    staged.write_text(json.dumps(accounts))
    os.replace(staged, accounts_file)


async def expire_access_token(conn: redis.asyncio.Redis, key_prefix: str, portal: str) -> None:
    await conn.delete(f"{key_prefix}:oauth:{portal}:token")


async def test_an_answer_for_another_hub_id_pauses_that_account_as_auth_naming_both_ids(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given account 1's configured refresh token is really account 7's
    endpoint = ScriptedEndpoint()
    endpoint.hub_ids[RT_1] = "7"
    endpoint.hub_ids[RT_2] = "2"
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    # When 20 jobs of each account ask at once
    one, two = await asyncio.gather(
        tokens_from_all(creds, "1", 20), tokens_from_all(creds, "2", 20)
    )
    # Then account 1's jobs get a CredentialsError naming both ids and the fix, after one refresh
    assert endpoint.count(RT_1) == 1
    assert all(type(e) is CredentialsError for e in one)
    message = str(one[0])
    assert message.startswith("the refresh token configured for portal 1 belongs to HubSpot ")
    assert "account 7 (the token endpoint answered hub_id 7, expected 1)" in message
    assert 'under "1" in EVENTQ_OAUTH_ACCOUNTS_FILE' in message
    assert "`eventq dlq replay --all --reason auth`" in message
    assert RT_1 not in message
    # and the other account's token was not kept for account 1; account 2 is unaffected
    assert await real_redis_pools[0].exists(f"{key_prefix}:oauth:1:token") == 0
    assert len(values(two)) == 1
    # When the admin configures account 1's own refresh token
    own = "refresh-one-own-" + uuid4().hex
    endpoint.hub_ids[own] = "1"
    rewrite_accounts(accounts_file, {"1": own, "2": RT_2})
    # Then account 1 works again
    assert (await creds[1].token_for("1")).portal_id == "1"


async def test_an_answer_without_hub_id_is_accepted_unchecked(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()  # answers no hub_id, as v1 did before August 2025
    [cred, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    assert (await cred.token_for("1")).portal_id == "1"


async def test_the_granted_scopes_reach_every_worker_with_the_token(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    endpoint = ScriptedEndpoint()
    endpoint.scopes = frozenset({"oauth", WRITE_SCOPE})
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    tokens = await tokens_from_all(creds, "1", 9)
    assert {t.scopes for t in tokens} == {frozenset({"oauth", WRITE_SCOPE})}
    unknown = ScriptedEndpoint()  # an answer without scopes: unknown, not "none"
    [cred, *_] = workers(real_redis_pools, key_prefix, unknown, accounts_file)
    assert (await cred.token_for("2")).scopes is None


async def test_a_rotated_refresh_token_is_stored_and_used_after_a_restart(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given HubSpot rotates account 1's refresh token on the first refresh and revokes the old
    endpoint = ScriptedEndpoint()
    new_rt = "refresh-one-next-" + uuid4().hex
    endpoint.rotations[RT_1] = new_rt
    creds = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    await tokens_from_all(creds, "1", 6)
    endpoint.rejected[RT_1] = INVALID_GRANT
    # When the workers restart (new processes, the configured token unchanged) and must refresh
    await expire_access_token(real_redis_pools[0], key_prefix, "1")
    restarted = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    tokens = await tokens_from_all(restarted, "1", 6)
    # Then the refresh used the stored new refresh token, once, never the revoked one again
    assert all(isinstance(t, AccessToken) for t in tokens)
    assert endpoint.calls == [RT_1, new_rt]
    # and the new refresh token is in Redis only in its own key
    dump = await dump_prefix(real_redis_pools[0], key_prefix)
    assert [k for k, v in dump.items() if new_rt in v] == [f"{key_prefix}:oauth:1:refresh"]


async def test_a_refused_rotated_refresh_token_falls_back_to_the_configured_one_once(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given a stored rotated refresh token that HubSpot now refuses, the configured one valid
    endpoint = ScriptedEndpoint()
    new_rt = "refresh-one-next-" + uuid4().hex
    endpoint.rotations[RT_1] = new_rt
    [cred, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    await cred.token_for("1")
    del endpoint.rotations[RT_1]
    endpoint.rejected[new_rt] = INVALID_GRANT
    # When the token must be refreshed
    await expire_access_token(real_redis_pools[0], key_prefix, "1")
    [restarted, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    token = await restarted.token_for("1")
    # Then the rotated one was tried, then the configured one, which is used from now on
    assert token.portal_id == "1"
    assert endpoint.calls == [RT_1, new_rt, RT_1]
    assert await real_redis_pools[0].exists(f"{key_prefix}:oauth:1:refresh") == 0
    # When the configured one is refused too, the account is paused as for any invalid_grant
    endpoint.rejected[RT_1] = INVALID_GRANT
    await expire_access_token(real_redis_pools[0], key_prefix, "1")
    [again, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    with pytest.raises(CredentialsError, match="refresh token for portal 1 was rejected"):
        await again.token_for("1")
    assert endpoint.calls == [RT_1, new_rt, RT_1, RT_1]


async def test_a_newly_configured_refresh_token_wins_over_a_stored_rotated_one(
    real_redis_pools: list[redis.asyncio.Redis], key_prefix: str, accounts_file: Path
) -> None:
    # Given a stored rotated refresh token for account 1
    endpoint = ScriptedEndpoint()
    endpoint.rotations[RT_1] = "refresh-one-next-" + uuid4().hex
    [cred, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    await cred.token_for("1")
    # When the admin configures another refresh token and the token must be refreshed
    configured = "refresh-one-configured-" + uuid4().hex
    rewrite_accounts(accounts_file, {"1": configured, "2": RT_2})
    await expire_access_token(real_redis_pools[0], key_prefix, "1")
    [restarted, *_] = workers(real_redis_pools, key_prefix, endpoint, accounts_file)
    await restarted.token_for("1")
    # Then the configured one was used, and the stale stored one is gone
    assert endpoint.calls[-1] == configured
    assert await real_redis_pools[0].exists(f"{key_prefix}:oauth:1:refresh") == 0
