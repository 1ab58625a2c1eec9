"""The retry policy: one table from attempt result to decision, and the backoff formula."""

from __future__ import annotations

import random

import pytest

from worker.attempts import Created, Found, HttpFailure, NetworkFailure, NotFound
from worker.retry_policy import (
    NO_ID_WARNING,
    Backoff,
    DeadLetterNow,
    Delivered,
    PauseBucket,
    RetryLater,
    Wait,
    backoff_delay_s,
    decide,
    retry_after_s,
)

POLICY = Backoff(base_s=2.0, cap_s=60.0, jitter=0.2, max_attempts=5, max_age_s=3600)


def decide_now(result: object, attempts: int = 1, age_s: float = 0.0) -> object:
    return decide(result, attempts_used=attempts, age_s=age_s, now_s=1000.0, policy=POLICY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (Created("1"), Delivered("1")),
        (Found("2"), Delivered("2")),
        (Created(None), Delivered(None, NO_ID_WARNING)),
        (HttpFailure(400, {"message": "bad"}), DeadLetterNow("rejected", "HTTP 400: bad")),
        (HttpFailure(404, {}), DeadLetterNow("rejected", "HTTP 404: HTTP 404")),
        (HttpFailure(409, {"message": "dup"}), DeadLetterNow("rejected", "HTTP 409: dup")),
        (HttpFailure(401, {"message": "no"}), DeadLetterNow("auth", "HTTP 401: no")),
        (HttpFailure(403, {"message": "scope"}), DeadLetterNow("auth", "HTTP 403: scope")),
    ],
)
def test_final_answers(result: object, expected: object) -> None:
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


def test_not_found_by_the_check_means_send_now() -> None:
    assert decide_now(NotFound()) == RetryLater(
        0.0, verify=False, reason="not found by the existence check"
    )


def test_429_pauses_the_bucket_for_retry_after() -> None:
    decision = decide_now(
        HttpFailure(429, {"policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "2"})
    )
    assert isinstance(decision, PauseBucket)
    assert decision.until_s == 1002.0
    assert decision.policy == "TEN_SECONDLY_ROLLING"


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
