"""The one decision: from what an attempt gathered to one Decision, and the backoff formula.

Pure: no Redis, no HTTP. Each table row is a `Gathered` record and the decision it must give.
"""

from __future__ import annotations

import random

import pytest

from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound
from worker.retry_policy import (
    NO_ID_WARNING,
    Backoff,
    DeadLetterNow,
    Decision,
    Delivered,
    Gathered,
    NoToken,
    PauseBucket,
    RefreshAndRetry,
    Refusal,
    Request,
    RetryLater,
    Send,
    Wait,
    backoff_delay_s,
    decide,
    retry_after_s,
)

POLICY = Backoff(base_s=2.0, cap_s=60.0, jitter=0.2, max_attempts=5, max_age_s=3600)
EXPIRED = HttpFailure(401, {"category": "EXPIRED_AUTHENTICATION", "message": "expired"})
SCOPE_403 = HttpFailure(
    403,
    {
        "category": "MISSING_SCOPES",
        "message": "This app hasn't been granted all required scopes",
        "errors": [{"context": {"requiredGranularScopes": ["crm.objects.marketing_events.write"]}}],
    },
)


def decide_facts(facts: Gathered, attempts_before: int = 0, age_s: float = 0.0) -> Decision:
    return decide(facts, attempts_before=attempts_before, age_s=age_s, now_s=1000.0, policy=POLICY)


def decide_now(result: AttemptResult, attempts: int = 1, age_s: float = 0.0) -> Decision:
    """Decide on the answer to a POST (a GET for Found/NotFound); `attempts` counts this one."""
    request: Request = "GET" if isinstance(result, Found | NotFound) else "POST"
    facts = Gathered(verify=False, request=request, result=result)
    return decide_facts(facts, attempts_before=attempts - 1, age_s=age_s)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (Created("1"), Delivered("1")),
        (Found("2"), Delivered("2")),
        (Created(None), Delivered(None, NO_ID_WARNING)),
        (HttpFailure(400, {"message": "bad"}), DeadLetterNow("rejected", "HTTP 400: bad")),
        (HttpFailure(404, {}), DeadLetterNow("rejected", "HTTP 404: HTTP 404")),
        (HttpFailure(409, {"message": "dup"}), DeadLetterNow("rejected", "HTTP 409: dup")),
        (HttpFailure(401, {"message": "no"}), DeadLetterNow("auth", "HTTP 401: no", "no")),
        (HttpFailure(403, {"message": "nope"}), DeadLetterNow("auth", "HTTP 403: nope", "nope")),
    ],
)
def test_final_answers(result: AttemptResult, expected: object) -> None:
    assert decide_now(result) == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_passing_statuses_are_retried(status: int) -> None:
    decision = decide_now(HttpFailure(status, {}))
    assert isinstance(decision, RetryLater)
    assert decision.verify == (status >= 500)  # a 5xx may have created the event


@pytest.mark.parametrize(
    ("result", "attempts", "age_s", "expected"),
    [
        # HubSpot's state, not the job's: wait for Retry-After, whatever the attempts used
        (HttpFailure(477, {}, {"Retry-After": "3"}), 1, 0.0, Wait(1003.0, "HTTP 477: HTTP 477")),
        (
            HttpFailure(423, {"message": "locked"}, {"Retry-After": "5"}),
            99,
            0.0,
            Wait(1005.0, "HTTP 423: locked"),
        ),
        # a 24 h Retry-After ends at the job's max age (3600 s here, 3000 s old: 600 s left)
        (
            HttpFailure(477, {}, {"Retry-After": "86400"}),
            1,
            3000.0,
            Wait(1600.0, "HTTP 477: HTTP 477"),
        ),
        # past the max age, it is exhausted
        (
            HttpFailure(477, {}, {"Retry-After": "3"}),
            1,
            3600.0,
            DeadLetterNow("exhausted", "gave up at the max age: HTTP 477: HTTP 477"),
        ),
    ],
)
def test_423_and_477_wait_without_using_an_attempt_up_to_the_max_age(
    result: HttpFailure, attempts: int, age_s: float, expected: object
) -> None:
    assert decide_now(result, attempts=attempts, age_s=age_s) == expected


def test_423_without_retry_after_waits_the_backoff_of_the_attempts_used() -> None:
    decision = decide_now(HttpFailure(423, {}), attempts=2)
    assert isinstance(decision, Wait)
    assert 1000.0 + 4.0 * 0.8 <= decision.until_s <= 1000.0 + 4.0 * 1.2


def test_a_timeout_after_sending_is_retried_as_an_idempotent_re_send() -> None:
    decision = decide_now(NetworkFailure("timeout", sent=True, detail="TimeoutError"))
    assert isinstance(decision, RetryLater)
    assert decision.verify


def test_a_connect_error_is_retried_without_a_check() -> None:
    decision = decide_now(NetworkFailure("connect", sent=False, detail="x"))
    assert isinstance(decision, RetryLater)
    assert not decision.verify


def test_not_found_by_the_check_means_post_now_within_the_attempt() -> None:
    facts = Gathered(verify=True, can_read=True, request="GET", result=NotFound())
    assert decide_facts(facts) == Send("POST", verify=False)


def test_429_pauses_the_bucket_and_hands_its_retry_after_to_the_limiter() -> None:
    decision = decide_now(
        HttpFailure(429, {"policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "2"})
    )
    assert isinstance(decision, PauseBucket)
    assert decision.retry_after_s == 2.0
    assert decision.policy == "TEN_SECONDLY_ROLLING"


def test_429_without_retry_after_leaves_the_pause_length_to_the_limiter() -> None:
    decision = decide_now(HttpFailure(429, {"policyName": "DAILY"}))
    assert isinstance(decision, PauseBucket)
    assert (decision.retry_after_s, decision.policy) == (None, "DAILY")


def test_429_is_never_exhausted_by_attempts() -> None:
    assert isinstance(decide_now(HttpFailure(429, {}), attempts=99), PauseBucket)


def test_the_budget_turns_a_retry_into_exhausted() -> None:
    assert decide_now(HttpFailure(503, {}), attempts=5) == DeadLetterNow(
        "exhausted", "gave up after 5 attempts: HTTP 503: HTTP 503"
    )
    assert isinstance(decide_now(HttpFailure(503, {}), attempts=1, age_s=3600), DeadLetterNow)


def test_retry_after_wins_over_the_formula_when_longer() -> None:
    decision = decide_now(HttpFailure(503, {}, {"retry-after": "30"}))
    assert isinstance(decision, RetryLater)
    assert decision.delay_s == 30.0


def test_backoff_doubles_within_bounded_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempts, nominal in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (10, 60.0)]:
        for _ in range(50):
            delay = backoff_delay_s(attempts, POLICY, rng)
            assert nominal * 0.8 <= delay <= nominal * 1.2


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_s({"Retry-After": "3"}, 0.0) == 3.0
    assert retry_after_s({"Retry-After": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4.0) == 6.0
    assert retry_after_s({"Retry-After": "soon"}, 0.0) is None
    assert retry_after_s({}, 0.0) is None


# -- before anything is sent: the ledger, the token, the breaker and the limiter ----------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # the ledger knows the event: delivered, nothing sent, no attempt used
        (
            Gathered(verify=True, in_ledger=True, ledger_object_id="9"),
            Delivered("9", detail="already in the delivered ledger", uses_attempt=False),
        ),
        # no token will come: dead-letter as auth, with the credentials' message
        (
            Gathered(verify=False, no_token=NoToken("portal 7 is not connected")),
            DeadLetterNow("auth", "portal 7 is not connected"),
        ),
        # the token endpoint is down: wait without an attempt, keep the next request
        (
            Gathered(verify=True, no_token=NoToken("token endpoint busy", 5.0)),
            Wait(1005.0, "token endpoint busy", verify=True),
        ),
        # the breaker or the limiter refused: wait until it says, keep the next request
        (
            Gathered(verify=True, request="PUT", refusal=Refusal(1030.0, "circuit breaker open")),
            Wait(1030.0, "circuit breaker open", verify=True),
        ),
        # nothing sent yet: POST first; PUT after an ambiguous attempt; GET first if readable
        (Gathered(verify=False), Send("POST", verify=False)),
        (Gathered(verify=False, can_read=True), Send("POST", verify=False)),
        (Gathered(verify=True), Send("PUT", verify=True)),
        (Gathered(verify=True, can_read=True), Send("GET", verify=True)),
    ],
)
def test_what_happens_before_a_request_decides_without_using_an_attempt(
    facts: Gathered, expected: Decision
) -> None:
    assert decide_facts(facts, attempts_before=3) == expected
    assert not decide_facts(facts, attempts_before=3).uses_attempt or isinstance(
        expected, DeadLetterNow
    )


def test_a_refusal_waits_even_past_the_max_age() -> None:
    # a refusal is the limiter's or breaker's business, not HubSpot's answer: not bounded
    facts = Gathered(verify=False, request="POST", refusal=Refusal(1010.0, "rate limit: busy"))
    assert decide_facts(facts, age_s=99_999) == Wait(1010.0, "rate limit: busy")


# -- after the existence check (GET) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (Found("5"), Delivered("5")),
        (
            HttpFailure(403, {"category": "MISSING_SCOPES"}),
            Send("PUT", verify=True, reason="existence check not usable (HTTP 403)"),
        ),
        (
            HttpFailure(503, {}),
            Send("PUT", verify=True, reason="existence check not usable (HTTP 503)"),
        ),
        (
            NetworkFailure("timeout", sent=True, detail="TimeoutError"),
            Send("PUT", verify=True, reason="existence check not usable (timeout: TimeoutError)"),
        ),
        (
            EXPIRED,
            RefreshAndRetry(
                Send("PUT", verify=True, reason="existence check not usable (HTTP 401)")
            ),
        ),
        (
            HttpFailure(429, {"policyName": "DAILY"}),
            PauseBucket(None, "DAILY", "HTTP 429", verify=True),
        ),
    ],
)
def test_the_existence_check_delivers_pauses_or_goes_on_to_a_put(
    found: AttemptResult, expected: Decision
) -> None:
    facts = Gathered(verify=True, can_read=True, request="GET", result=found)
    assert decide_facts(facts, attempts_before=7) == expected


# -- after a POST or PUT ----------------------------------------------------------------------


def test_an_expired_token_is_refreshed_else_dead_lettered_as_auth() -> None:
    facts = Gathered(verify=False, request="POST", result=EXPIRED)
    assert decide_facts(facts) == RefreshAndRetry(
        DeadLetterNow("auth", "HTTP 401: expired", "expired")
    )
    assert not decide_facts(facts).uses_attempt


def test_an_ambiguous_job_stays_a_put_whatever_comes_next() -> None:
    # a PUT that failed with a connect error (not sent) still re-sends with PUT next time
    connect = NetworkFailure("connect", sent=False, detail="ClientConnectorError")
    retry = decide_facts(Gathered(verify=True, request="PUT", result=connect))
    assert isinstance(retry, RetryLater)
    assert retry.verify
    wait = decide_facts(Gathered(verify=True, request="PUT", result=HttpFailure(423, {})))
    assert isinstance(wait, Wait)
    assert wait.verify


def test_a_missing_scope_dead_letters_naming_the_scope_and_the_fix() -> None:
    facts = Gathered(verify=False, portal_id="77", request="POST", result=SCOPE_403)
    decision = decide_facts(facts)
    assert isinstance(decision, DeadLetterNow)
    assert decision.reason == "auth"
    assert decision.message is not None
    assert "missing scope crm.objects.marketing_events.write" in decision.message
    assert "portal 77" in decision.message
    assert decision.detail == f"HTTP 403: {decision.message}"


@pytest.mark.parametrize(
    ("decision", "uses_attempt"),
    [
        (Delivered("1"), True),
        (RetryLater(1.0, verify=False, reason="x"), True),
        (Wait(1.0, "x"), False),
        (PauseBucket(None, "DAILY", "x"), False),
        (Send("PUT", verify=True), False),
    ],
)
def test_only_a_request_answered_on_the_job_s_account_uses_an_attempt(
    decision: Decision, uses_attempt: bool
) -> None:
    assert decision.uses_attempt is uses_attempt
