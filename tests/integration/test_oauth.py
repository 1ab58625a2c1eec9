"""OAuth mode end to end: real Redis, real `celery worker` processes, the fake HubSpot's OAuth.

Every secret here is unique per run (client secret, refresh tokens) so a leak is easy to grep
for; access tokens are sampled from eventq's Redis cache while the tests run.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
import redis

from eventq.keys import Keys
from fake_hubspot.app import TOKEN_PATH
from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.control import FakeHubSpot
from producers.enqueue import Producer
from tests.conftest import Stack, valid_event, wait_for
from tests.integration.helpers import send_raw, wait_state

CLIENT_ID = "eventq-test-client"
CLIENT_SECRET = "client-secret-" + uuid.uuid4().hex
REPLAY_HINT = "`eventq dlq replay --all --reason auth`"


def refresh_token(name: str) -> str:
    return f"refresh-{name}-{uuid.uuid4().hex}"


def use_oauth(
    stack: Stack,
    fake: FakeHubSpot,
    accounts: dict[int, str],
    *,
    lifetime_s: float | None = None,
    scopes: list[str] | None = None,
    **settings: str,
) -> None:
    """Switch the stack to OAuth mode with `accounts` (portal -> refresh token) at the fake."""
    fake.configure_oauth(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        access_token_lifetime_s=lifetime_s,
        refresh_tokens={token: portal for portal, token in accounts.items()},
        scopes=scopes,
    )
    write_accounts(stack, accounts)
    stack.env.pop("EVENTQ_HUBSPOT_ACCESS_TOKEN", None)  # prove no private-app token is used
    stack.env.update(
        {
            "EVENTQ_OAUTH_CLIENT_ID": CLIENT_ID,
            "EVENTQ_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "EVENTQ_OAUTH_ACCOUNTS_FILE": str(stack.tmp / "accounts.json"),
            "EVENTQ_OAUTH_REFRESH_MARGIN_S": "1",
            **settings,
        }
    )


def write_accounts(stack: Stack, accounts: dict[int, str]) -> None:
    """Replace the accounts file atomically, as an admin rotating a token would."""
    staged = stack.tmp / "accounts.json.new"
    staged.write_text(json.dumps({str(portal): token for portal, token in accounts.items()}))
    os.replace(staged, stack.tmp / "accounts.json")


def keys(stack: Stack) -> Keys:
    return Keys(stack.env["EVENTQ_KEY_PREFIX"])


def job_states(client: redis.Redis, stack: Stack, job_ids: list[str]) -> list[tuple[str, int]]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys(stack).job(job_id), ["state", "attempts"])
        rows = pipe.execute()
    return [((s or b"").decode(), int(a or 0)) for s, a in rows]


def settled(client: redis.Redis, stack: Stack, job_ids: list[str]) -> bool:
    done = ("delivered", "dead_lettered")
    return all(state in done for state, _ in job_states(client, stack, job_ids))


def dead_letters(client: redis.Redis, stack: Stack) -> list[dict[str, Any]]:
    ids = [i.decode() for i in client.zrange(keys(stack).dlq, 0, -1)]
    raw = [client.get(keys(stack).dlq_entry(i)) for i in ids]
    return [json.loads(r) for r in raw if r is not None]


def cached_access_token(client: redis.Redis, stack: Stack, portal: int) -> str | None:
    key = f"{stack.env['EVENTQ_KEY_PREFIX']}:oauth:{portal}:token"
    value = client.hget(key, "token")
    return None if value is None else value.decode()


def redis_values(client: redis.Redis, stack: Stack, skip: Iterable[str] = ()) -> dict[str, str]:
    """Return every value this stack keeps in Redis, as text (keys in `skip` left out)."""
    found: dict[str, str] = {}
    for raw in client.scan_iter(f"{stack.env['EVENTQ_KEY_PREFIX']}:*", count=1000):
        key = raw.decode()
        if key in skip:
            continue
        kind = client.type(key).decode()
        if kind == "string":
            found[key] = str(client.get(key))
        elif kind == "hash":
            found[key] = str(client.hgetall(key))
        elif kind == "list":
            found[key] = str(client.lrange(key, 0, -1))
        elif kind == "zset":
            found[key] = str(client.zrange(key, 0, -1))
    return found


def assert_no_secrets_leaked(
    client: redis.Redis, stack: Stack, secrets: set[str], token_keys: set[str]
) -> None:
    logs = stack.log_text()
    assert "Bearer" not in logs
    stored = redis_values(client, stack, skip=token_keys)
    for secret in secrets:
        assert secret not in logs, "a secret is in the worker logs"
        for key, value in stored.items():
            assert secret not in value, f"a secret is in Redis key {key}"


def token_requests(fake: FakeHubSpot) -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["path"] == TOKEN_PATH]


def test_tokens_living_5_s_are_refreshed_once_per_expiry_for_1000_jobs_across_two_workers(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given access tokens that live 5 s, refreshed 1 s early, and two worker processes
    rt = refresh_token("a")
    use_oauth(
        stack,
        fake,
        {101: rt},
        lifetime_s=5.0,
        EVENTQ_ACCOUNT_RATE_LIMIT="1000/1s",  # the default 110/10s would pace 50 jobs/s
        EVENTQ_LOG_LEVEL="DEBUG",
    )
    stack.start_worker(concurrency=16)
    stack.start_worker(concurrency=16)
    producer = Producer(stack.settings)
    # When 1,000 jobs arrive over 20 s (50 a second), naming their account or not
    access_tokens: set[str] = set()
    job_ids: list[str] = []
    started = time.monotonic()
    for second in range(20):
        for n in range(50):
            portal = "101" if n % 2 else None  # None: the single account is the default
            job_ids.append(producer.enqueue(valid_event(f"{second}-{n}"), portal_id=portal)[0])
        access_tokens.add(cached_access_token(redis_client, stack, 101) or "")
        time.sleep(max(0.0, started + second + 1 - time.monotonic()))

    def all_done() -> bool:
        access_tokens.add(cached_access_token(redis_client, stack, 101) or "")
        return int(fake.stats()["events"]) >= 1000 and settled(redis_client, stack, job_ids)

    wait_for(all_done, 60, "1000 jobs delivered", every_s=0.25)
    # Then every job was delivered on its first attempt, none dead-lettered
    states = job_states(redis_client, stack, job_ids)
    assert states == [("delivered", 1)] * 1000
    assert dead_letters(redis_client, stack) == []
    assert len(fake.events()) == 1000
    # and the fake saw one refresh per expiry: one every (5 - 1) s at most, never a storm
    refreshes = token_requests(fake)
    assert all(r["status"] == 200 for r in refreshes)
    creates = [r for r in fake.requests() if r["method"] == "POST" and r["path"] != TOKEN_PATH]
    span_s = max(r["receivedAt"] for r in creates) - refreshes[0]["receivedAt"]
    expected = math.ceil(span_s / 4.0)
    gaps = [b["receivedAt"] - a["receivedAt"] for a, b in itertools.pairwise(refreshes)]
    expired_401s = sum(1 for r in creates if r["status"] == 401)
    print(
        f"\n{len(refreshes)} refreshes over {span_s:.1f} s (expected about {expected}); "
        f"gaps {[round(g, 2) for g in gaps]}; {expired_401s} expired-token 401s"
    )
    assert fake.stats()["token_refreshes"] == {"101": len(refreshes)}
    assert len(refreshes) <= expected + 1
    assert min(gaps) >= 3.0
    # and no secret reached the logs, the job records or the DLQ
    access_tokens.discard("")
    assert len(access_tokens) >= 3
    token_key = f"{stack.env['EVENTQ_KEY_PREFIX']}:oauth:101:token"
    assert_no_secrets_leaked(
        redis_client, stack, {CLIENT_SECRET, rt, *access_tokens}, token_keys={token_key}
    )


def test_a_revoked_refresh_token_dead_letters_only_that_accounts_jobs_as_auth(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given accounts A and B, and A's refresh token revoked at HubSpot
    rt_a, rt_b = refresh_token("a"), refresh_token("b")
    use_oauth(stack, fake, {201: rt_a, 202: rt_b}, EVENTQ_DEFAULT_PORTAL_ID="202")
    fake.revoke_refresh_token(rt_a)
    stack.start_worker(concurrency=16)
    producer = Producer(stack.settings)
    # When 40 jobs of each account arrive interleaved
    jobs_a, jobs_b = [], []
    for n in range(40):
        jobs_a.append(producer.enqueue(valid_event(f"a-{n}"), portal_id="201")[0])
        jobs_b.append(producer.enqueue(valid_event(f"b-{n}"))[0])  # the default account
    wait_for(lambda: settled(redis_client, stack, jobs_a + jobs_b), 30, "80 jobs settled")
    # Then all of B's were delivered, as B
    assert job_states(redis_client, stack, jobs_b) == [("delivered", 1)] * 40
    assert {e["identity"] for e in fake.events()} == {"portal:202"}
    # and all of A's are in the DLQ as `auth`, saying what to do, after one refusal by HubSpot
    assert [s for s, _ in job_states(redis_client, stack, jobs_a)] == ["dead_lettered"] * 40
    entries = dead_letters(redis_client, stack)
    assert len(entries) == 40
    assert {(e["reason"], e["portalId"]) for e in entries} == {("auth", "201")}
    message = entries[0]["error"]["message"]
    assert message.startswith("refresh token for portal 201 was rejected (invalid_grant")
    assert "re-authorize the app for this account" in message
    assert "EVENTQ_OAUTH_ACCOUNTS_FILE" in message
    assert REPLAY_HINT in message
    assert [r["status"] for r in token_requests(fake) if r["identity"] is None] == [400]
    # When the admin re-authorizes A, rotates its token in the file and replays
    rt_a2 = refresh_token("a2")
    fake.configure_oauth(refresh_tokens={rt_a2: 201})
    write_accounts(stack, {201: rt_a2, 202: rt_b})
    time.sleep(2.5)  # workers look at the file every 2 s
    replay = stack.run_cli("dlq", "replay", "--all", "--reason", "auth")
    assert replay.returncode == 0, replay.stderr
    # Then A's jobs are delivered, without restarting anything
    fake.wait_for_events(80, timeout_s=30)
    assert {e["identity"] for e in fake.events()} == {"portal:201", "portal:202"}
    assert_no_secrets_leaked(
        redis_client,
        stack,
        {CLIENT_SECRET, rt_a, rt_a2, rt_b},
        token_keys={f"{stack.env['EVENTQ_KEY_PREFIX']}:oauth:{p}:token" for p in (201, 202)},
    )


@pytest.mark.serial
def test_two_accounts_limited_to_10_per_second_each_deliver_at_that_rate_with_zero_429s(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given two accounts each limited to 10 requests/s at HubSpot and in eventq
    accounts = {301: refresh_token("a"), 302: refresh_token("b")}
    use_oauth(
        stack,
        fake,
        accounts,
        EVENTQ_ACCOUNT_RATE_LIMIT="10/1s",
        EVENTQ_RATE_LIMIT_PAD_MS="100",  # absorbs loopback jitter between grant and arrival
    )
    for portal in accounts:
        fake.set_account_rate_limit(portal, 10, window_ms=1000)
    stack.start_worker(concurrency=16)
    stack.start_worker(concurrency=16)
    producer = Producer(stack.settings)
    # When 60 jobs of each arrive at once
    job_ids = [
        producer.enqueue(valid_event(f"{portal}-{n}"), portal_id=str(portal))[0]
        for n in range(60)
        for portal in accounts
    ]
    wait_for(lambda: settled(redis_client, stack, job_ids), 40, "120 jobs settled")
    # Then all were delivered without one 429, each account at its own limit, concurrently
    assert job_states(redis_client, stack, job_ids) == [("delivered", 1)] * 120
    creates = [r for r in fake.requests() if r["path"] != TOKEN_PATH]
    assert [r for r in creates if r["status"] == 429] == []
    assert fake.stats()["rate_limited"] == {}
    spans = {}
    for portal in accounts:
        times = sorted(r["receivedAt"] for r in creates if r["identity"] == f"portal:{portal}")
        assert len(times) == 60
        rate = (len(times) - 1) / (times[-1] - times[0])
        busiest = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
        print(f"\nportal {portal}: {rate:.2f} requests/s, busiest second {busiest}")
        assert 8.0 <= rate <= 11.0  # a first burst of 10, then 10 per window + pad
        assert busiest <= 10
        spans[portal] = (times[0], times[-1])
    (a0, a1), (b0, b1) = spans.values()
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap >= 0.8 * min(a1 - a0, b1 - b0)


def test_a_token_without_the_write_scope_is_dead_lettered_as_auth_naming_the_scope(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    use_oauth(stack, fake, {801: refresh_token("read-only")}, scopes=["oauth", READ_SCOPE])
    stack.start_worker()
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    wait_state(stack, job_id, "dead_lettered")
    [entry] = dead_letters(redis_client, stack)
    assert (entry["reason"], entry["httpStatus"], entry["portalId"]) == ("auth", 403, "801")
    assert entry["error"]["message"].startswith(f"missing scope {WRITE_SCOPE}: the token of")
    assert REPLAY_HINT in entry["error"]["message"]
    assert entry["error"]["category"] == "MISSING_SCOPES"


def test_a_raw_message_for_an_unknown_account_is_dead_lettered_as_auth(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    use_oauth(stack, fake, {601: refresh_token("only")})
    stack.start_worker()
    send_raw(stack.settings, [{"jobId": "raw-unknown", "portalId": "999", "event": valid_event()}])
    wait_state(stack, "raw-unknown", "dead_lettered")
    [entry] = dead_letters(redis_client, stack)
    assert entry["reason"] == "auth"
    assert entry["error"]["message"].startswith(
        "portalId '999' is not a configured HubSpot account (known: 601)"
    )
    assert fake.requests() == []


def test_an_expired_token_401_is_retried_at_once_with_a_new_token_without_using_an_attempt(
    stack: Stack, fake: FakeHubSpot
) -> None:
    # Given a worker that has a token for a while
    use_oauth(stack, fake, {701: refresh_token("a")})
    stack.start_worker()
    producer = Producer(stack.settings)
    first, _ = producer.enqueue(valid_event("first"))
    wait_state(stack, first, "delivered")
    time.sleep(1.2)  # a token younger than 1 s reported expired is not refreshed again
    # When HubSpot says the token expired on the next create
    fake.fail_next(
        1,
        401,
        body={
            "status": "error",
            "message": "The OAuth token used to make this call expired 2 second(s) ago.",
            "category": "EXPIRED_AUTHENTICATION",
            "correlationId": "c-expired",
        },
    )
    job_id, _ = producer.enqueue(valid_event("second"))
    # Then the job is delivered at once with a refreshed token, on its first attempt
    job = wait_state(stack, job_id, "delivered")
    assert job.attempts == 1
    assert fake.stats()["token_refreshes"] == {"701": 2}
    calls = [(r["path"] == TOKEN_PATH, r["status"]) for r in fake.requests()]
    assert calls == [(True, 200), (False, 200), (False, 401), (True, 200), (False, 200)]


def oauth_keys(stack: Stack, portals: Iterable[int], parts: Iterable[str]) -> set[str]:
    return {keys(stack).oauth(str(p), part) for p in portals for part in parts}


def test_the_access_token_is_refreshed_at_oauth_v3_token(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given OAuth mode with the default token URL
    rt = refresh_token("v3")
    use_oauth(stack, fake, {1201: rt}, EVENTQ_LOG_LEVEL="DEBUG")
    stack.start_worker()
    # When a job is delivered
    job_id, _ = Producer(stack.settings).enqueue(valid_event())
    wait_state(stack, job_id, "delivered")
    # Then its token came from HubSpot's v3 endpoint, not the deprecated v1
    token = [r for r in fake.requests() if r["path"].startswith("/oauth/")]
    assert [(r["method"], r["path"], r["status"]) for r in token] == [
        ("POST", "/oauth/v3/token", 200)
    ]
    assert [e["identity"] for e in fake.events()] == ["portal:1201"]
    access = cached_access_token(redis_client, stack, 1201)
    assert access is not None
    assert_no_secrets_leaked(
        redis_client,
        stack,
        {CLIENT_SECRET, rt, access},
        token_keys=oauth_keys(stack, [1201], ["token"]),
    )


def test_a_hub_id_mismatch_dead_letters_that_accounts_jobs_as_auth_naming_both_ids(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given a refresh token configured for portal 1301 that HubSpot issued for account 1399
    # (the fake's grant is 1399's, so its token answers hub_id 1399), and a correct account 1302
    rt_wrong, rt_b = refresh_token("wrong"), refresh_token("b")
    use_oauth(stack, fake, {1302: rt_b}, EVENTQ_LOG_LEVEL="DEBUG")
    fake.configure_oauth(refresh_tokens={rt_wrong: 1399})
    write_accounts(stack, {1301: rt_wrong, 1302: rt_b})
    stack.start_worker()
    producer = Producer(stack.settings)
    # When 10 jobs of each account arrive
    jobs_a = [producer.enqueue(valid_event(f"a-{n}"), portal_id="1301")[0] for n in range(10)]
    jobs_b = [producer.enqueue(valid_event(f"b-{n}"), portal_id="1302")[0] for n in range(10)]
    wait_for(lambda: settled(redis_client, stack, jobs_a + jobs_b), 30, "20 jobs settled")
    # Then 1301's jobs are dead-lettered as auth, naming both ids and the fix; none was sent
    assert job_states(redis_client, stack, jobs_b) == [("delivered", 1)] * 10
    assert {e["identity"] for e in fake.events()} == {"portal:1302"}
    entries = dead_letters(redis_client, stack)
    assert len(entries) == 10
    assert {(e["reason"], e["portalId"]) for e in entries} == {("auth", "1301")}
    message = entries[0]["error"]["message"]
    assert message.startswith(
        "the refresh token configured for portal 1301 belongs to HubSpot account 1399 "
        "(the token endpoint answered hub_id 1399, expected 1301)"
    )
    assert 'under "1301" in EVENTQ_OAUTH_ACCOUNTS_FILE' in message
    assert REPLAY_HINT in message
    # and HubSpot was asked once for 1301: the account is paused, not hammered
    assert fake.stats()["token_refreshes"] == {"1399": 1, "1302": 1}
    assert "hub_id 1399, expected 1301" in stack.log_text()
    assert_no_secrets_leaked(
        redis_client,
        stack,
        {CLIENT_SECRET, rt_wrong, rt_b},
        token_keys=oauth_keys(stack, [1301, 1302], ["token"]),
    )


def test_a_rotated_refresh_token_is_used_after_a_worker_restart(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given HubSpot rotates account 1401's refresh token on its next refresh and revokes the old
    rt = refresh_token("rotating")
    use_oauth(stack, fake, {1401: rt}, lifetime_s=2.0, EVENTQ_LOG_LEVEL="DEBUG")
    fake.rotate_refresh_token(1401, revoke_old=True)
    stack.start_worker()
    producer = Producer(stack.settings)
    first, _ = producer.enqueue(valid_event("first"))
    wait_state(stack, first, "delivered")
    [rotation] = fake.rotated_refresh_tokens()
    rt_new = rotation["refresh_token"]
    # When the worker restarts after the access token expired (the accounts file unchanged,
    # so it still holds the now revoked refresh token)
    stack.stop_workers()
    wait_for(
        lambda: cached_access_token(redis_client, stack, 1401) is None, 10, "access token expired"
    )
    stack.start_worker()
    second, _ = producer.enqueue(valid_event("second"))
    # Then the job is delivered on its first attempt with a token from the new refresh token
    job = wait_state(stack, second, "delivered")
    assert job.attempts == 1
    assert [r["status"] for r in token_requests(fake)] == [200, 200]
    assert fake.stats()["token_refreshes"] == {"1401": 2}
    assert fake.rotated_refresh_tokens() == [rotation]
    assert "rotated portal 1401's refresh token" in stack.log_text()
    # and the new refresh token is stored only in its own Redis key, never logged
    refresh_key = keys(stack).oauth("1401", "refresh")
    assert rt_new in str(redis_client.hgetall(refresh_key))
    assert_no_secrets_leaked(
        redis_client,
        stack,
        {CLIENT_SECRET, rt, rt_new},
        token_keys=oauth_keys(stack, [1401], ["token", "refresh"]),
    )


def test_a_429_from_the_token_endpoint_holds_that_account_only(
    stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    # Given the token endpoint answers account 1501's first refresh with 429, Retry-After 3 s
    rt_a, rt_b = refresh_token("a"), refresh_token("b")
    use_oauth(stack, fake, {1501: rt_a, 1502: rt_b}, EVENTQ_LOG_LEVEL="DEBUG")
    fake.fail_next_token_requests(1, 429, {"Retry-After": "3"}, portal_id=1501)
    stack.start_worker()
    producer = Producer(stack.settings)
    # When 10 jobs of each account arrive
    jobs_a = [producer.enqueue(valid_event(f"a-{n}"), portal_id="1501")[0] for n in range(10)]
    jobs_b = [producer.enqueue(valid_event(f"b-{n}"), portal_id="1502")[0] for n in range(10)]
    # Then the other account's jobs are delivered while 1501's wait
    wait_for(
        lambda: job_states(redis_client, stack, jobs_b) == [("delivered", 1)] * 10,
        20,
        "account 1502's jobs delivered",
    )
    held = [state for state, _ in job_states(redis_client, stack, jobs_a)]
    assert "delivered" not in held
    assert "dead_lettered" not in held
    assert [e["identity"] for e in fake.events()] == ["portal:1502"] * 10
    # and then 1501's are delivered too, each on its first attempt: the wait used none
    wait_for(lambda: settled(redis_client, stack, jobs_a), 30, "account 1501's jobs settled")
    assert job_states(redis_client, stack, jobs_a) == [("delivered", 1)] * 10
    assert dead_letters(redis_client, stack) == []
    # and HubSpot was asked again for 1501 only after its Retry-After, once
    refreshes = token_requests(fake)
    assert sorted(r["status"] for r in refreshes) == [200, 200, 429]
    [refused] = [r for r in refreshes if r["status"] == 429]
    [retried] = [r for r in refreshes if r["identity"] == "portal:1501"]
    assert retried["receivedAt"] - refused["receivedAt"] >= 2.5
    assert "token endpoint answered HTTP 429" in stack.log_text()
    assert_no_secrets_leaked(
        redis_client,
        stack,
        {CLIENT_SECRET, rt_a, rt_b},
        token_keys=oauth_keys(stack, [1501, 1502], ["token"]),
    )
