"""The one place that decides: delivered, retry later, wait, pause everyone, or dead-letter.

Pure functions over plain data, so every rule is unit-tested without Redis or HTTP.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from eventq.records import DeadLetterReason
from worker.attempts import AttemptResult, Created, Found, HttpFailure, NetworkFailure, NotFound

__all__ = [
    "NO_ID_WARNING",
    "Backoff",
    "DeadLetterNow",
    "Decision",
    "Delivered",
    "PauseBucket",
    "RetryLater",
    "Wait",
    "backoff_delay_s",
    "decide",
    "retry_after_s",
]

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
class Delivered:
    """The event exists at HubSpot with this object id (None: the answer gave none; `warning`)."""

    object_id: str | None
    warning: str = ""


@dataclass(frozen=True)
class RetryLater:
    """Try again after `delay_s`. `verify`: check HubSpot first (the request may have landed)."""

    delay_s: float
    verify: bool
    reason: str


@dataclass(frozen=True)
class Wait:
    """Park this job until `until_s` without using an attempt (HubSpot's state, not the job's)."""

    until_s: float
    reason: str


@dataclass(frozen=True)
class PauseBucket:
    """Stop every worker sending on this bucket until `until_s`; uses none of the job's attempts."""

    until_s: float
    policy: str
    reason: str


@dataclass(frozen=True)
class DeadLetterNow:
    """Give up: the job goes to the DLQ with this reason."""

    reason: DeadLetterReason
    detail: str


Decision = Delivered | RetryLater | Wait | PauseBucket | DeadLetterNow


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
    result: AttemptResult, *, attempts_used: int, age_s: float, now_s: float, policy: Backoff
) -> Decision:
    """Return what to do after `result`; `attempts_used` already counts this attempt.

    The retry budget (attempts or age) turns a would-be retry into `exhausted`; a wait uses no
    attempt, so only the age bounds it: it ends at the latest when the job reaches its max age,
    and past that age it is `exhausted` too.
    """
    decision = _classify(result, attempts_used=attempts_used, now_s=now_s, policy=policy)
    if isinstance(decision, RetryLater) and _exhausted(attempts_used, age_s, policy):
        return DeadLetterNow(
            "exhausted", f"gave up after {attempts_used} attempts: {decision.reason}"
        )
    if isinstance(decision, Wait):
        if age_s >= policy.max_age_s:
            return DeadLetterNow("exhausted", f"gave up at the max age: {decision.reason}")
        deadline_s = now_s + policy.max_age_s - age_s
        return Wait(min(decision.until_s, deadline_s), decision.reason)
    return decision


def _exhausted(attempts_used: int, age_s: float, policy: Backoff) -> bool:
    return attempts_used >= policy.max_attempts or age_s >= policy.max_age_s


def _classify(
    result: AttemptResult, *, attempts_used: int, now_s: float, policy: Backoff
) -> Decision:
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
        return PauseBucket(now_s + (wait_s if wait_s is not None else 1.0), policy_name, message)
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
