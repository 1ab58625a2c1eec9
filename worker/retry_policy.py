"""The one place that decides what an attempt's facts mean: pure functions over plain data.

An attempt is gather → decide → apply: `worker.delivery` gathers what happened into one
`Gathered` record (ledger, token, breaker/limiter refusal, the HTTP outcome of GET/POST/PUT and
its headers), `decide` returns one `Decision`, and delivery applies it (job store, limiter
pause, breaker, metrics, log line). Every rule is unit-tested without Redis or HTTP; a batch
item is decided the same way from its own `Gathered`.

Decision
 ├── Send            go on within this attempt: send POST or PUT next (after a GET, or first)
 ├── Delivered       the event exists at HubSpot
 ├── RetryLater      park for a backoff; uses an attempt; `verify` picks the next request
 ├── Wait            park until a time without using an attempt (HubSpot's state, no token yet,
 │                   breaker or limiter refusal)
 ├── PauseBucket     a 429: the limiter pauses the bucket (once) and the job waits for it
 ├── RefreshAndRetry an expired token: refresh it and retry at once, else `otherwise`
 └── DeadLetterNow   give up with a reason
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from eventq.records import DeadLetterReason
from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound
from worker.credentials import describe_auth_failure, is_expired_token

__all__ = [
    "NO_ID_WARNING",
    "Backoff",
    "DeadLetterNow",
    "Decision",
    "Delivered",
    "Gathered",
    "NoToken",
    "PauseBucket",
    "RefreshAndRetry",
    "Refusal",
    "Request",
    "RetryLater",
    "Send",
    "Wait",
    "backoff_delay_s",
    "decide",
    "retry_after_s",
]

Request = Literal["GET", "POST", "PUT"]

# statuses HubSpot documents as passing: try again later
_TRANSIENT = frozenset({500, 502, 503, 504, 520, 521, 522, 523, 524})
# HubSpot's own state (423 locked, 477 account migration), not the job's fault: no attempt used
_HUBSPOT_STATE = frozenset({423, 477})
NO_ID_WARNING = "HubSpot's answer carried neither id nor objectId"


@dataclass(frozen=True)
class Backoff:
    """Retry policy as data: exponential from `base_s`, capped, with bounded ± jitter."""

    base_s: float = 2.0
    cap_s: float = 600.0
    jitter: float = 0.2
    max_attempts: int = 8
    max_age_s: float = 86_400.0


@dataclass(frozen=True)
class Refusal:
    """The circuit breaker or the rate limiter said not now: try again at `retry_at`."""

    retry_at: float
    reason: str


@dataclass(frozen=True)
class NoToken:
    """No token for the job's account: `retry_after_s` None means none will come (auth)."""

    message: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Gathered:
    """What one step of an attempt produced, as data: the input of `decide`.

    A step is: the ledger, then the token, then (per request) the breaker and the limiter, then
    the request and its answer. Fields not reached stay at their defaults.
    """

    verify: bool  # an earlier attempt was ambiguous (or a replay): re-send with PUT
    can_read: bool = False  # the token holds the read scope, so the GET check may run
    portal_id: str | None = None
    in_ledger: bool = False  # the delivered ledger knows the event
    ledger_object_id: str | None = None
    no_token: NoToken | None = None
    refusal: Refusal | None = None
    request: Request | None = None  # what was sent; None before the first request
    result: AttemptResult | None = None

    def sending(self, step: Send) -> Gathered:
        """Return the facts of the next request of this attempt (nothing gathered for it yet)."""
        return Gathered(
            verify=step.verify,
            can_read=self.can_read,
            portal_id=self.portal_id,
            request=step.request,
        )


@dataclass(frozen=True)
class Send:
    """Go on within this attempt: send `request` next; `reason` is logged when not empty."""

    request: Request
    verify: bool
    reason: str = ""

    uses_attempt = False


@dataclass(frozen=True)
class Delivered:
    """The event exists at HubSpot with this object id (None: the answer gave none; `warning`).

    `uses_attempt` is False when the ledger answered and nothing was sent.
    """

    object_id: str | None
    warning: str = ""
    detail: str = "delivered"
    uses_attempt: bool = True


@dataclass(frozen=True)
class RetryLater:
    """Try again after `delay_s`, using an attempt. `verify`: the next request is a PUT.

    A token with the read scope looks first (GET) before that PUT.
    """

    delay_s: float
    verify: bool
    reason: str

    uses_attempt = True


@dataclass(frozen=True)
class Wait:
    """Park this job until `until_s` without using an attempt (HubSpot's state, not the job's).

    `verify` is kept as it was: the next request is the one this attempt would have sent.
    """

    until_s: float
    reason: str
    verify: bool = False

    uses_attempt = False


@dataclass(frozen=True)
class PauseBucket:
    """Stop every worker sending on this bucket; uses none of the job's attempts.

    How long is the limiter's rule (`RateLimiter.after_429`): HubSpot's `retry_after_s` when it
    gave one (None: it did not), else the window or the daily reset of `policy`.
    """

    retry_after_s: float | None
    policy: str
    reason: str
    verify: bool = False

    uses_attempt = False


@dataclass(frozen=True)
class DeadLetterNow:
    """Give up: the job goes to the DLQ with this reason.

    `message` is the DLQ entry's error message when it differs from HubSpot's (a missing scope).
    """

    reason: DeadLetterReason
    detail: str
    message: str | None = None

    uses_attempt = True


@dataclass(frozen=True)
class RefreshAndRetry:
    """HubSpot said the token expired: refresh it and retry at once (no attempt used).

    When the credentials cannot refresh (a private app, or a token too young to have expired),
    follow `otherwise`.
    """

    otherwise: Decision

    uses_attempt = False


Decision = Send | Delivered | RetryLater | Wait | PauseBucket | RefreshAndRetry | DeadLetterNow


def backoff_delay_s(attempts_used: int, policy: Backoff, rng: random.Random | None = None) -> float:
    """Return the delay before the next attempt after `attempts_used` failed attempts."""
    exponent = max(0, attempts_used - 1)
    delay = min(policy.cap_s, policy.base_s * (2.0**exponent))
    spread = (rng or random).uniform(-policy.jitter, policy.jitter)
    return max(0.0, min(policy.cap_s * (1 + policy.jitter), delay * (1.0 + spread)))


def retry_after_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Return `Retry-After` (seconds or HTTP date) as seconds from now, or None when absent."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now_s)


def decide(
    facts: Gathered, *, attempts_before: int, age_s: float, now_s: float, policy: Backoff
) -> Decision:
    """Return the one decision for what an attempt gathered so far.

    `attempts_before` counts the job's attempts before this one; `age_s` is the job's age.
    """
    if facts.in_ledger:
        detail = "already in the delivered ledger"
        return Delivered(facts.ledger_object_id, detail=detail, uses_attempt=False)
    if facts.no_token is not None:
        return _without_token(facts.no_token, facts.verify, now_s)
    if facts.refusal is not None:
        return Wait(facts.refusal.retry_at, facts.refusal.reason, facts.verify)
    if facts.result is None or facts.request is None:
        return Send(_first_request(facts), facts.verify)
    used = attempts_before + 1
    if facts.request == "GET":
        return _after_look(facts, facts.result, attempts_used=used, now_s=now_s, policy=policy)
    return _after_send(
        facts, facts.result, attempts_used=used, age_s=age_s, now_s=now_s, policy=policy
    )


def _without_token(no_token: NoToken, verify: bool, now_s: float) -> Decision:
    if no_token.retry_after_s is None:
        return DeadLetterNow("auth", no_token.message)
    # the token endpoint is down or busy: wait, use no attempt
    return Wait(now_s + no_token.retry_after_s, no_token.message, verify)


def _first_request(facts: Gathered) -> Request:
    """POST first; after an ambiguous attempt a PUT, which cannot duplicate (GET first if read)."""
    if not facts.verify:
        return "POST"
    return "GET" if facts.can_read else "PUT"


def _after_look(
    facts: Gathered, found: AttemptResult, *, attempts_used: int, now_s: float, policy: Backoff
) -> Decision:
    """Decide after the existence check: found is delivered, not found is POSTed, else PUT."""
    if isinstance(found, NotFound):  # HubSpot has no such event: a POST cannot duplicate it
        return Send("POST", verify=False)
    if isinstance(found, Found) or (isinstance(found, HttpFailure) and found.status == 429):
        decision = _result(found, attempts_used=attempts_used, now_s=now_s, policy=policy)
        return _with_verify(decision, facts.verify)
    # a refused or failed look falls back to the PUT, never to a dead letter
    put = Send("PUT", facts.verify, f"existence check not usable ({_describe(found)})")
    if isinstance(found, HttpFailure) and is_expired_token(found):
        return RefreshAndRetry(put)
    return put


def _after_send(
    facts: Gathered,
    result: AttemptResult,
    *,
    attempts_used: int,
    age_s: float,
    now_s: float,
    policy: Backoff,
) -> Decision:
    """Decide after a POST or PUT; an expired token is refreshed before anything else."""
    decision = _result(result, attempts_used=attempts_used, now_s=now_s, policy=policy)
    decision = _bounded(
        decision, attempts_used=attempts_used, age_s=age_s, now_s=now_s, policy=policy
    )
    decision = _with_verify(decision, facts.verify)
    if isinstance(decision, DeadLetterNow) and decision.reason == "auth":
        decision = _auth_dead_letter(decision, result, facts.portal_id)
    if isinstance(result, HttpFailure) and is_expired_token(result):
        return RefreshAndRetry(decision)
    return decision


def _with_verify(decision: Decision, verify: bool) -> Decision:
    """Keep an ambiguous job ambiguous: once a PUT is due, it stays due until delivered."""
    if isinstance(decision, RetryLater | Wait | PauseBucket):
        return replace(decision, verify=verify or decision.verify)
    return decision


def _auth_dead_letter(
    decision: DeadLetterNow, result: AttemptResult, portal_id: str | None
) -> DeadLetterNow:
    if not isinstance(result, HttpFailure):
        return decision
    message = describe_auth_failure(result, portal_id)
    return DeadLetterNow("auth", f"HTTP {result.status}: {message}", message)


def _describe(result: AttemptResult) -> str:
    """Return a short, secret-free description of a result for a log line."""
    if isinstance(result, HttpFailure):
        return f"HTTP {result.status}"
    if isinstance(result, NetworkFailure):
        return f"{result.kind}: {result.detail}"
    return type(result).__name__


def _bounded(
    decision: Decision, *, attempts_used: int, age_s: float, now_s: float, policy: Backoff
) -> Decision:
    """Apply the retry budget to a decision about HubSpot's answer.

    The retry budget (attempts or age) turns a would-be retry into `exhausted`; a wait uses no
    attempt, so only the age bounds it: it ends at the latest when the job reaches its max age,
    and past that age it is `exhausted` too.
    """
    if isinstance(decision, RetryLater) and _exhausted(attempts_used, age_s, policy):
        return DeadLetterNow(
            "exhausted", f"gave up after {attempts_used} attempts: {decision.reason}"
        )
    if isinstance(decision, Wait):
        if age_s >= policy.max_age_s:
            return DeadLetterNow("exhausted", f"gave up at the max age: {decision.reason}")
        deadline_s = now_s + policy.max_age_s - age_s
        return Wait(min(decision.until_s, deadline_s), decision.reason, decision.verify)
    return decision


def _exhausted(attempts_used: int, age_s: float, policy: Backoff) -> bool:
    return attempts_used >= policy.max_attempts or age_s >= policy.max_age_s


def _result(
    result: AttemptResult, *, attempts_used: int, now_s: float, policy: Backoff
) -> Decision:
    """The table from one HTTP outcome to a decision, before the retry budget."""
    if isinstance(result, Created | Found):
        return Delivered(result.object_id, "" if result.object_id else NO_ID_WARNING)
    if isinstance(result, NotFound):
        return RetryLater(0.0, verify=False, reason="not found by the existence check")
    if isinstance(result, NetworkFailure):
        delay = backoff_delay_s(attempts_used, policy)
        return RetryLater(delay, verify=result.sent, reason=f"{result.kind}: {result.detail}")
    return _classify_http(result, attempts_used=attempts_used, now_s=now_s, policy=policy)


def _classify_http(
    failure: HttpFailure, *, attempts_used: int, now_s: float, policy: Backoff
) -> Decision:
    status, message = failure.status, failure.message
    wait_s = retry_after_s(failure.headers, now_s)
    if status == 429:
        policy_name = failure.policy_name or "TEN_SECONDLY_ROLLING"
        return PauseBucket(wait_s, policy_name, message)
    if status in _HUBSPOT_STATE:
        delay = wait_s if wait_s is not None else backoff_delay_s(attempts_used, policy)
        return Wait(now_s + delay, f"HTTP {status}: {message}")
    if status in _TRANSIENT or status >= 500:
        delay = max(backoff_delay_s(attempts_used, policy), wait_s or 0.0)
        return RetryLater(delay, verify=status >= 500, reason=f"HTTP {status}: {message}")
    if status in (401, 403):
        return DeadLetterNow("auth", f"HTTP {status}: {message}")
    return DeadLetterNow("rejected", f"HTTP {status}: {message}")


def utc_now_s() -> float:
    """Return the current time as epoch seconds (UTC)."""
    return datetime.now(UTC).timestamp()
