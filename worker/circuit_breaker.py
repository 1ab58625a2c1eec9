"""Circuit breaker per HubSpot base URL, its state shared by all workers through Redis."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from eventq.keys import Keys
from eventq.redis_io import as_text, load_lua
from worker.attempts import AttemptResult, HttpFailure, NetworkFailure

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "Breaker",
    "BreakerDecision",
    "BreakerView",
    "CircuitBreaker",
    "breaker_state_key",
    "is_struggling",
    "read_breaker",
]

logger = logging.getLogger("eventq.breaker")

# An idle breaker forgets its state (closes) after this long without writes.
_MIN_KEY_TTL_MS = 3_600 * 1000


@dataclass(frozen=True)
class BreakerDecision:
    """Whether one request to a target may go now."""

    allowed: bool
    state: str  # "closed" | "open" | "half_open"
    retry_at: float  # epoch seconds when to try again if not allowed
    probe: bool  # this call is the half-open probe
    failures: int = 0  # consecutive failures recorded so far (closed state)

    @property
    def clean(self) -> bool:
        """Return True when closed with no failure on record: a success changes nothing."""
        return self.state == "closed" and self.failures == 0


@dataclass(frozen=True)
class BreakerView:
    """The stored state of one target's breaker, for the overview."""

    target: str
    state: str  # "closed" | "open" | "half_open"
    failures: int  # consecutive failures recorded (closed state)
    open_until: float | None  # epoch seconds the cooldown ends (open state)


class Breaker(Protocol):
    """What the delivery path asks of the breaker (CircuitBreaker; an in-memory one in tests)."""

    async def allow(self, target: str) -> BreakerDecision:
        """Return whether one request to `target` may go now."""
        ...

    async def record_success(self, target: str) -> None:
        """Record a request that HubSpot answered without struggling."""
        ...

    async def record_failure(self, target: str) -> None:
        """Record a timeout, a dropped connection or a 5xx."""
        ...


def is_struggling(result: AttemptResult) -> bool:
    """Return True when `result` counts against the breaker: no answer, or a 5xx."""
    if isinstance(result, NetworkFailure):
        return True
    return isinstance(result, HttpFailure) and result.status >= 500


def breaker_state_key(keys: Keys, target: str) -> str:
    """Return the Redis hash holding the breaker state of `target` (a HubSpot base URL)."""
    digest = hashlib.sha1(target.encode(), usedforsecurity=False).hexdigest()[:12]
    return keys.breaker(digest)


async def read_breaker(client: redis.asyncio.Redis, keys: Keys, target: str) -> BreakerView:
    """Return the stored state of `target`'s breaker (no key: closed); raises redis errors."""
    pending = client.hmget(breaker_state_key(keys, target), ["state", "failures", "open_until_ms"])
    state, failures, open_until_ms = await cast("Awaitable[list[bytes | None]]", pending)
    return BreakerView(
        target=target,
        state="closed" if state is None else as_text(state),
        failures=int(failures or 0),
        open_until=None if open_until_ms is None else int(open_until_ms) / 1000,
    )


class CircuitBreaker:
    """closed → open after consecutive failures → one probe after the cooldown → closed/open."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str,
        failures_to_open: int = 5,
        cooldown_s: float = 15.0,
    ) -> None:
        if failures_to_open < 1:
            raise ValueError(f"failures_to_open must be >= 1, got {failures_to_open}")
        if cooldown_s <= 0:
            raise ValueError(f"cooldown_s must be > 0, got {cooldown_s}")
        self._redis = redis
        self._names = Keys(prefix)
        self._failures_to_open = failures_to_open
        self._cooldown_ms = max(1, round(cooldown_s * 1000))
        self._key_ttl_ms = max(_MIN_KEY_TTL_MS, 4 * self._cooldown_ms)
        self._allow_script = redis.register_script(load_lua("breaker_allow", "worker"))
        self._record_script = redis.register_script(load_lua("breaker_record", "worker"))

    def state_key(self, target: str) -> str:
        """Return the Redis hash holding `target`'s breaker state (for metrics)."""
        return self._key(target)

    def _key(self, target: str) -> str:
        return breaker_state_key(self._names, target)

    async def allow(self, target: str) -> BreakerDecision:
        """Return whether a request to `target` may go; at most one caller gets the probe.

        A probe permission lapses after the cooldown if its holder never records an outcome.
        Raises redis errors.
        """
        # The probe holder gets one cooldown to report before someone else may probe.
        args = [self._cooldown_ms, self._key_ttl_ms]
        allowed, state, retry_at_ms, probe, transitioned, _, failures = await self._allow_script(
            [self._key(target)], args
        )
        decision = BreakerDecision(
            allowed=bool(int(allowed)),
            state=as_text(state),
            retry_at=int(retry_at_ms) / 1000,
            probe=bool(int(probe)),
            failures=int(failures),
        )
        if int(transitioned):
            logger.info("circuit breaker half-open for %s: this worker sends the probe", target)
        return decision

    async def record_success(self, target: str) -> None:
        """Record a successful request: closes a half-open breaker, resets failures when closed.

        Raises redis errors.
        """
        await self._record(target, "success")

    async def record_failure(self, target: str) -> None:
        """Record a 5xx or timeout: may open a closed breaker, reopens a half-open one.

        Raises redis errors.
        """
        await self._record(target, "failure")

    async def _record(self, target: str, outcome: str) -> None:
        args: list[str | int] = [
            outcome,
            self._failures_to_open,
            self._cooldown_ms,
            self._key_ttl_ms,
        ]
        state, transitioned, failures, _ = await self._record_script([self._key(target)], args)
        if not int(transitioned):
            return
        if as_text(state) == "open":
            cause = f"{int(failures)} consecutive failures" if int(failures) else "probe failed"
            logger.warning(
                "circuit breaker open for %s after %s; no requests for %.1f s",
                target,
                cause,
                self._cooldown_ms / 1000,
            )
        else:
            logger.info("circuit breaker closed for %s: probe succeeded", target)

    async def state(self, target: str) -> str:
        """Return the stored state of `target`'s breaker: "closed", "open" or "half_open".

        An open breaker whose cooldown has passed still reads "open" until someone asks to
        send. Raises redis errors.
        """
        # redis-py types hget for sync and async clients alike.
        pending = cast(
            "Awaitable[bytes | str | None]", self._redis.hget(self._key(target), "state")
        )
        raw = await pending
        return "closed" if raw is None else as_text(raw)
