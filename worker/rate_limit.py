"""Global HubSpot rate limiter: a sliding-window log of send times in Redis, shared by workers."""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventq.jobs import as_text, load_lua
from eventq.keys import Keys
from eventq.settings import RateLimit, Settings

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "Grant",
    "LimiterState",
    "RateLimiter",
    "bucket_for_portal",
    "bucket_for_token",
    "next_daily_reset",
]

_DAY_S = 86_400
# A configured per-bucket budget outlives idle periods; each process also keeps its own copy.
_CONF_TTL_MS = 30 * _DAY_S * 1000
# HubSpot repeats its limits on every response, so a stale observation soon gets refreshed.
_OBS_TTL_MS = 3_600 * 1000
_HEADER = "x-hubspot-ratelimit-"


@dataclass(frozen=True)
class Grant:
    """The limiter's answer to one acquire."""

    granted: bool
    send_at: float  # epoch seconds (Redis clock) when the request may go (granted)
    retry_at: float  # epoch seconds to try again (not granted); equals send_at when granted
    reason: str  # "ok", "busy", "paused:TEN_SECONDLY_ROLLING", "paused:DAILY", ...
    now: float  # Redis clock at decision time

    @property
    def wait_s(self) -> float:
        """Return how long the caller must sleep before sending (0 when it may send now)."""
        return max(0.0, self.send_at - self.now)


@dataclass(frozen=True)
class LimiterState:
    """A snapshot of one bucket, for metrics and the CLI."""

    budget: int  # grants per window after margin (the tighter of configured and observed)
    window_s: float  # HubSpot's window for that budget, without the pad
    used: int  # grants with send times in the current (padded) window, up to now
    reserved: int  # grants with send times still in the future
    paused_until: float | None  # epoch seconds, None when not paused
    reason: str | None  # why it is paused


def bucket_for_token(token: str) -> str:
    """Return the bucket of a private-app token; a hash, so tokens never reach Redis keys."""
    return "app:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def bucket_for_portal(portal_id: str) -> str:
    """Return the bucket of an OAuth account (HubSpot portal); raise ValueError if id is blank."""
    portal_id = portal_id.strip()
    if not portal_id:
        raise ValueError("portal id must not be empty")
    return f"portal:{portal_id}"


def next_daily_reset(now_epoch_s: float, reset_hour_utc: int) -> float:
    """Return the first epoch second strictly after now at `reset_hour_utc`:00 UTC.

    Raises ValueError for an hour outside 0..23.
    """
    if not 0 <= reset_hour_utc <= 23:
        raise ValueError(f"reset hour must be 0..23, got {reset_hour_utc}")
    offset_s = reset_hour_utc * 3_600
    days = math.floor((now_epoch_s - offset_s) / _DAY_S)
    return float((days + 1) * _DAY_S + offset_s)


def _window_ms(window_s: float) -> int:
    return math.ceil(window_s * 1000 - 1e-9)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(_HEADER + name)
    try:
        return int(raw.strip()) if raw is not None else None
    except ValueError:
        return None


class RateLimiter:
    """Never exceed a bucket's budget in any rolling window, across every worker sharing Redis."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str,
        limit: RateLimit,
        margin: float = 0.0,
        pad_ms: int = 250,
        daily_reset_utc_hour: int = 0,
    ) -> None:
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        if pad_ms < 0:
            raise ValueError(f"pad_ms must be >= 0, got {pad_ms}")
        if not 0 <= daily_reset_utc_hour <= 23:
            raise ValueError(f"daily reset hour must be 0..23, got {daily_reset_utc_hour}")
        self._redis = redis
        self._names = Keys(prefix)
        self._limit = limit
        self._margin = margin
        self._pad_ms = pad_ms
        self._daily_reset_utc_hour = daily_reset_utc_hour
        self._budgets: dict[str, RateLimit] = {}
        # (Max, Interval-Milliseconds) last written per bucket, with when (monotonic s)
        self._observed: dict[str, tuple[tuple[int, int], float]] = {}
        self._acquire_script = redis.register_script(load_lua("rate_limit_acquire", "worker"))
        self._pause_script = redis.register_script(load_lua("rate_limit_pause", "worker"))

    def _key(self, bucket: str, part: str) -> str:
        return self._names.rate_limit(bucket, part)

    def _keys(self, bucket: str) -> list[str]:
        return [self._key(bucket, part) for part in ("log", "pause", "conf", "obs")]

    @classmethod
    def from_settings(cls, redis: redis.asyncio.Redis, settings: Settings) -> RateLimiter:
        """Return the limiter configured by the EVENTQ_RATE_LIMIT* settings."""
        return cls(
            redis,
            prefix=settings.key_prefix,
            limit=settings.rate_limit,
            margin=settings.rate_limit_margin,
            pad_ms=settings.rate_limit_pad_ms,
            daily_reset_utc_hour=settings.daily_reset_utc_hour,
        )

    async def acquire(self, bucket: str, max_wait_s: float) -> Grant:
        """Reserve the earliest send slot of `bucket` if it is at most `max_wait_s` away.

        Returns a granted Grant (sleep `wait_s`, then send) or a refused one whose `retry_at`
        says when to try again; refused grants reserve nothing. Raises redis errors.
        """
        limit = self._budgets.get(bucket, self._limit)
        args: list[str | int] = [
            limit.requests,
            _window_ms(limit.window_s),
            repr(self._margin),
            self._pad_ms,
            max(0, math.floor(max_wait_s * 1000)),
            secrets.token_hex(6),
            repr(random.random()),  # noqa: S311 - retry jitter, not security
        ]
        granted, at_ms, now_ms, reason = await self._acquire_script(self._keys(bucket), args)
        at_s, now_s = int(at_ms) / 1000, int(now_ms) / 1000
        return Grant(
            granted=bool(int(granted)),
            send_at=at_s,
            retry_at=at_s,
            reason=as_text(reason),
            now=now_s,
        )

    async def pause(self, bucket: str, until_epoch_s: float, reason: str) -> None:
        """Refuse every acquire of `bucket` until `until_epoch_s` (Redis clock).

        A pause never shortens a longer one already in force. Raises redis errors.
        """
        await self._pause_for(bucket, math.ceil(until_epoch_s * 1000), 0, reason)

    async def _pause_for(self, bucket: str, until_ms: int, for_ms: int, reason: str) -> None:
        await self._pause_script([self._key(bucket, "pause")], [until_ms, for_ms, reason])

    async def observe(self, bucket: str, headers: Mapping[str, str]) -> None:
        """Correct `bucket` from HubSpot's X-HubSpot-RateLimit-* response headers.

        Adopts a smaller reported budget, pauses for one slot when Remaining is 0 and until the
        daily reset when Daily-Remaining is 0. Malformed headers are ignored. Raises redis errors.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        max_requests = _int_header(lowered, "max")
        interval_ms = _int_header(lowered, "interval-milliseconds")
        reported = None
        if max_requests and interval_ms and max_requests > 0 and interval_ms > 0:
            reported = RateLimit(max_requests, interval_ms / 1000)
            # Stored even when larger than configured: acquire enforces both, so the budget is
            # min(configured, observed) and a later raise by HubSpot replaces an older cut.
            # HubSpot repeats the same figures on every answer: write them only when they
            # change or half their TTL has passed, not once per request.
            seen = (max_requests, interval_ms)
            last = self._observed.get(bucket)
            now_s = time.monotonic()
            if last is None or last[0] != seen or now_s - last[1] > _OBS_TTL_MS / 2000:
                key = self._key(bucket, "obs")
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(key, mapping={"req": max_requests, "window_ms": interval_ms})
                    pipe.pexpire(key, _OBS_TTL_MS)
                    await pipe.execute()
                self._observed[bucket] = (seen, now_s)
        if _int_header(lowered, "remaining") == 0:
            # HubSpot's count includes requests we did not make (other apps on this token).
            limit = reported or self._budgets.get(bucket, self._limit)
            slot_ms = math.ceil(_window_ms(limit.window_s) / limit.requests)
            await self._pause_for(bucket, 0, slot_ms, "ROLLING_EXHAUSTED")
        if _int_header(lowered, "daily-remaining") == 0:
            seconds, microseconds = await self._redis.time()
            now_s = int(seconds) + int(microseconds) / 1e6
            reset_s = next_daily_reset(now_s, self._daily_reset_utc_hour)
            await self.pause(bucket, reset_s, "DAILY")

    async def budget_for(self, bucket: str, limit: RateLimit) -> None:
        """Set `bucket`'s configured budget (OAuth accounts may differ); raise redis errors."""
        self._budgets[bucket] = limit
        key = self._key(bucket, "conf")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"req": limit.requests, "window_ms": _window_ms(limit.window_s)})
            pipe.pexpire(key, _CONF_TTL_MS)
            await pipe.execute()

    async def state(self, bucket: str) -> LimiterState:
        """Return a snapshot of `bucket` (not atomic; for metrics and the CLI)."""
        log, pause, conf, obs = self._keys(bucket)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(pause)
            pipe.hgetall(conf)
            pipe.hgetall(obs)
            (seconds, microseconds), paused, configured, observed = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(microseconds) // 1000
        limits = [self._limit_from(configured) or self._budgets.get(bucket, self._limit)]
        if reported := self._limit_from(observed):
            limits.append(reported)
        budgets = [(self._granted(limit), limit.window_s) for limit in limits]
        budget, window_s = min(budgets, key=lambda b: (b[0] / b[1], b[0]))
        widest_ms = max(_window_ms(w) for _, w in budgets) + self._pad_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(log, f"({now_ms - widest_ms}", now_ms)
            pipe.zcount(log, f"({now_ms}", "+inf")
            used, reserved = await pipe.execute()
        pause_fields = {as_text(k): as_text(v) for k, v in paused.items()}
        until_ms = int(pause_fields.get("until_ms", 0))
        is_paused = until_ms > now_ms
        return LimiterState(
            budget=budget,
            window_s=window_s,
            used=int(used),
            reserved=int(reserved),
            paused_until=until_ms / 1000 if is_paused else None,
            reason=pause_fields.get("reason") if is_paused else None,
        )

    def _granted(self, limit: RateLimit) -> int:
        # Must match limit() in rate_limit_acquire.lua.
        return max(1, math.floor(limit.requests * (1 - self._margin) + 1e-9))

    @staticmethod
    def _limit_from(fields: Mapping[Any, Any]) -> RateLimit | None:
        decoded = {as_text(k): as_text(v) for k, v in fields.items()}
        try:
            return RateLimit(int(decoded["req"]), int(decoded["window_ms"]) / 1000)
        except (KeyError, ValueError):
            return None
