"""Global HubSpot rate limiter: a sliding-window log of send times in Redis, shared by workers."""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from eventq.keys import Keys
from eventq.redis_io import as_text, load_lua
from eventq.settings import RateLimit, Settings

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "Grant",
    "Limiter",
    "LimiterState",
    "Pause",
    "RateLimiter",
    "bucket_for_portal",
    "bucket_for_token",
    "held_estimate",
    "is_late",
    "is_portal_bucket",
    "next_daily_reset",
    "others_estimate",
    "our_counted_span",
    "pause_after_429",
    "shared_budget",
]

_DAY_S = 86_400
# A configured per-bucket budget outlives idle periods; each process also keeps its own copy.
_CONF_TTL_MS = 30 * _DAY_S * 1000
# ensure_budget re-writes a configured budget this often, well inside its TTL.
_CONF_EVERY_S = 86_400.0
# HubSpot repeats its limits on every response, so a stale observation soon gets refreshed.
_OBS_TTL_MS = 3_600 * 1000
_HEADER = "x-hubspot-ratelimit-"
_UTC = ZoneInfo("UTC")
# What others spend is forgotten with this half-life, in windows, once they stop.
_SHARE_HALF_LIFE_WINDOWS = 1.0
# Headroom kept beside the others' estimate: this fraction of it, and at least one request.
_SHARE_HEADROOM = 0.1


@dataclass(frozen=True)
class Grant:
    """The limiter's answer to one acquire."""

    granted: bool
    send_at: float  # epoch seconds (Redis clock) when the request may go (granted)
    retry_at: float  # epoch seconds to try again (not granted); equals send_at when granted
    reason: str  # "ok", "busy", "paused:TEN_SECONDLY_ROLLING", "paused:DAILY", ...
    now: float  # Redis clock at decision time
    member: str = ""  # the grant's entry in the bucket's log (granted), for `release`

    @property
    def wait_s(self) -> float:
        """Return how long the caller must sleep before sending (0 when it may send now)."""
        return max(0.0, self.send_at - self.now)


@dataclass(frozen=True)
class LimiterState:
    """A snapshot of one bucket, for metrics and the CLI."""

    budget: int  # grants per window after margin, share and HubSpot's reported budget
    window_s: float  # HubSpot's window for that budget, without the pad
    used: int  # grants with send times in the current (padded) window, up to now
    reserved: int  # grants with send times still in the future
    paused_until: float | None  # epoch seconds, None when not paused
    reason: str | None  # why it is paused
    others: float = 0.0  # what other clients of the budget spend per window (estimate)


class Limiter(Protocol):
    """What the delivery path asks of the limiter (RateLimiter; an in-memory one in tests)."""

    async def acquire(self, bucket: str, max_wait_s: float) -> Grant:
        """Reserve a slot of `bucket` at most `max_wait_s` away, or refuse with a retry time."""
        ...

    async def observe(
        self, bucket: str, headers: Mapping[str, str], sent_at: float | None = None
    ) -> None:
        """Correct `bucket` from the rate-limit headers of an answer that is no 429."""
        ...

    def is_late(self, grant: Grant, elapsed_s: float) -> bool:
        """Return True when `grant`'s request, `elapsed_s` after the grant, missed its slot."""
        ...

    async def release(self, bucket: str, grant: Grant) -> None:
        """Give back a granted slot that will not be used."""
        ...

    async def after_429(
        self, bucket: str, policy: str, headers: Mapping[str, str], retry_after_s: float | None
    ) -> Pause:
        """Pause `bucket` once after a 429 with this `policy`; return the pause."""
        ...


def bucket_for_token(token: str) -> str:
    """Return the bucket of a private-app token; a hash, so tokens never reach Redis keys."""
    return "app:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def bucket_for_portal(portal_id: str) -> str:
    """Return the bucket of an OAuth account (HubSpot portal); raise ValueError if id is blank."""
    portal_id = portal_id.strip()
    if not portal_id:
        raise ValueError("portal id must not be empty")
    return f"portal:{portal_id}"


def is_portal_bucket(bucket: str) -> bool:
    """Return True for an OAuth account's bucket (HubSpot gives those no daily limit)."""
    return bucket.startswith("portal:")


def next_daily_reset(now_epoch_s: float, zone: ZoneInfo = _UTC) -> float:
    """Return the first midnight in `zone` strictly after now, as epoch seconds.

    A day is 23 or 25 hours long across a DST change; a midnight skipped by a change is the
    first moment of that day.
    """
    today = datetime.fromtimestamp(now_epoch_s, zone).date()
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone)
    return midnight.timestamp()


@dataclass(frozen=True)
class Pause:
    """How long a bucket rests after a 429, and why (for the log line)."""

    until_s: float
    why: str


def pause_after_429(
    now_s: float,
    *,
    policy: str,
    retry_after_s: float | None,
    window_s: float,
    daily_reset_s: float | None,
) -> float:
    """Return when a bucket refused by a 429 may send again (epoch seconds).

    `Retry-After` wins when HubSpot gives one. Without it a rolling-window 429 waits a whole
    `window_s`: HubSpot's window may need that long to free a slot, and waiting less only draws
    more 429s. DAILY waits for `daily_reset_s`; None (OAuth: no daily limit) treats DAILY as
    rolling.
    """
    after = None if retry_after_s is None else now_s + retry_after_s
    if policy == "DAILY" and daily_reset_s is not None:
        return max(daily_reset_s, after or 0.0)
    return after if after is not None else now_s + window_s


def is_late(wait_s: float, elapsed_s: float, pad_s: float) -> bool:
    """Return True when a request woke too late to use its slot.

    `elapsed_s` is the time from the grant's answer to now, `wait_s` the wait it asked for. A
    slot is only good while the request reaches HubSpot within the pad of it: half the pad is
    left for the wake-up, half for the trip. A later send (a loaded machine, a blocked event
    loop) can put more than the budget in one of HubSpot's windows beside sends on time.
    Without a pad (0) no lateness is tolerated by the limiter anyway: never late.
    """
    return pad_s > 0 and elapsed_s - wait_s > pad_s / 2


def held_estimate(peak: float, age_s: float, window_s: float) -> float:
    """Return what a peak estimate of the others' use, `age_s` old, still counts for.

    It holds for one window (our own answers, and with them new samples, may come only in
    bursts once a window), then halves per window, so it fades once the others stop.
    """
    fading_s = max(0.0, age_s - window_s)
    decay: float = 0.5 ** (fading_s / (window_s * _SHARE_HALF_LIFE_WINDOWS))
    return peak * decay


def others_estimate(
    used_by_all: int, ours: int, peak: float, peak_age_s: float, window_s: float
) -> float:
    """Return what other clients spend per window of a shared budget.

    `used_by_all` is HubSpot's count in its window (Max - Remaining), `ours` our own sends in
    that window; the estimate is that sample or the held peak (`held_estimate`), the larger.
    A sample at least as large becomes the new peak.
    """
    sample = max(0, used_by_all - ours)
    return max(float(sample), held_estimate(peak, peak_age_s, window_s))


def our_counted_span(sent_ms: int, now_ms: int, window_ms: int, pad_ms: int) -> tuple[int, int]:
    """Return the send times (low exclusive, high inclusive, epoch ms) of our own grants that
    HubSpot may have counted in the Remaining of the answer to a request granted at `sent_ms`.

    HubSpot counts arrivals in its window at the request's arrival, somewhere in [sent, now],
    and each of our requests arrives up to `pad_ms` after its grant. Every grant it may have
    counted lies in (sent - window - pad, min(sent + pad, now)], so Max - Remaining minus ours
    there never counts our own requests as the others'. Counting ours in (now - window, now]
    instead (the window at the time the answer is read) left out grants HubSpot still counted
    and took them for other clients, which lowered our budget for nothing.
    """
    return sent_ms - window_ms - pad_ms, min(sent_ms + pad_ms, now_ms)


def shared_budget(budget: int, others: float) -> int:
    """Return the part of `budget` left to us when others spend about `others` of it.

    Keeps headroom beside the estimate (a tenth of it, at least one request); never below 1.
    Under one request of others' use counts as noise.
    """
    if others < 1.0:
        return budget
    headroom = max(1, math.ceil(others * _SHARE_HEADROOM))
    return max(1, budget - math.ceil(others) - headroom)


def _window_ms(window_s: float) -> int:
    return math.ceil(window_s * 1000 - 1e-9)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(_HEADER + name)
    try:
        return int(raw.strip()) if raw is not None else None
    except ValueError:
        return None


class RateLimiter:
    """Never exceed a bucket's budget in any rolling window, across every worker sharing Redis.

    A bucket's budget is the configured one until HubSpot's headers report the account's
    (`X-HubSpot-RateLimit-Max`, up to `ceiling`); with `share`, what other clients of the same
    budget spend (seen in `X-HubSpot-RateLimit-Remaining`) is left to them.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        *,
        prefix: str,
        limit: RateLimit,
        margin: float = 0.0,
        pad_ms: int = 250,
        ceiling: RateLimit | None = None,
        share: bool = False,
        daily_zone: ZoneInfo = _UTC,
        daily_setting: str = "EVENTQ_HUBSPOT_TIMEZONE",
    ) -> None:
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        if pad_ms < 0:
            raise ValueError(f"pad_ms must be >= 0, got {pad_ms}")
        self._redis = redis
        self._names = Keys(prefix)
        self._limit = limit
        self._margin = margin
        self._pad_ms = pad_ms
        self._ceiling = ceiling or RateLimit(250, 10.0)
        self._share = share
        self._daily_zone = daily_zone
        self._daily_setting = daily_setting
        self._budgets: dict[str, RateLimit] = {}
        # (Max, Interval-Milliseconds) last written per bucket, with when (monotonic s)
        self._observed: dict[str, tuple[tuple[int, int], float]] = {}
        self._conf_written: dict[str, float] = {}  # bucket -> when ensure_budget last wrote it
        self._acquire_script = redis.register_script(load_lua("rate_limit_acquire", "worker"))
        self._pause_script = redis.register_script(load_lua("rate_limit_pause", "worker"))
        self._share_script = redis.register_script(load_lua("rate_limit_share", "worker"))

    def _key(self, bucket: str, part: str) -> str:
        return self._names.rate_limit(bucket, part)

    def _keys(self, bucket: str) -> list[str]:
        return [self._key(bucket, part) for part in ("log", "pause", "conf", "obs", "share")]

    @classmethod
    def from_settings(cls, redis: redis.asyncio.Redis, settings: Settings) -> RateLimiter:
        """Return the limiter configured by the EVENTQ_RATE_LIMIT* and daily-reset settings."""
        return cls(
            redis,
            prefix=settings.key_prefix,
            limit=settings.rate_limit,
            margin=settings.rate_limit_margin,
            pad_ms=settings.rate_limit_pad_ms,
            ceiling=settings.rate_limit_ceiling,
            share=settings.rate_limit_share,
            daily_zone=settings.daily_reset_zone,
            daily_setting=settings.daily_reset_setting,
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
            self._ceiling.requests,
            _window_ms(self._ceiling.window_s),
            int(self._share),
        ]
        answer = await self._acquire_script(self._keys(bucket), args)
        granted, at_ms, now_ms, reason = answer[:4]
        at_s, now_s = int(at_ms) / 1000, int(now_ms) / 1000
        return Grant(
            granted=bool(int(granted)),
            send_at=at_s,
            retry_at=at_s,
            reason=as_text(reason),
            now=now_s,
            member=as_text(answer[4]) if len(answer) > 4 else "",
        )

    def is_late(self, grant: Grant, elapsed_s: float) -> bool:
        """Return True when `grant`'s request, `elapsed_s` after the grant, missed its slot."""
        return is_late(grant.wait_s, elapsed_s, self._pad_ms / 1000)

    async def release(self, bucket: str, grant: Grant) -> None:
        """Give back a granted slot that will not be used (its request is never sent).

        Safe at any time: fewer entries never put more than the budget in a window, and grants
        already made were made with it. Raises redis errors.
        """
        if grant.granted and grant.member:
            await self._redis.zrem(self._key(bucket, "log"), grant.member)

    async def pause(self, bucket: str, until_epoch_s: float, reason: str) -> None:
        """Refuse every acquire of `bucket` until `until_epoch_s` (Redis clock).

        A pause never shortens a longer one already in force. Raises redis errors.
        """
        await self._pause_for(bucket, math.ceil(until_epoch_s * 1000), 0, reason)

    async def _pause_for(self, bucket: str, until_ms: int, for_ms: int, reason: str) -> None:
        await self._pause_script([self._key(bucket, "pause")], [until_ms, for_ms, reason])

    async def _now_s(self) -> float:
        seconds, microseconds = await self._redis.time()
        return int(seconds) + int(microseconds) / 1e6

    async def observe(
        self, bucket: str, headers: Mapping[str, str], sent_at: float | None = None
    ) -> None:
        """Correct `bucket` from the X-HubSpot-RateLimit-* headers of an answer that is no 429.

        `sent_at` is the request's `Grant.send_at` (None: now), the moment HubSpot's figures
        are compared with our own grants (`our_counted_span`).

        Learns the account's budget and the others' share, pauses for one slot when Remaining
        is 0 and, for a private app, until the daily reset when Daily-Remaining is 0 (OAuth
        calls have no daily limit). Malformed headers are ignored. Raises redis errors.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        reported = await self._learn(bucket, lowered, sent_at)
        if _int_header(lowered, "remaining") == 0:
            # HubSpot's count includes requests we did not make (other apps on this token).
            limit = reported or self._budgets.get(bucket, self._limit)
            slot_ms = math.ceil(_window_ms(limit.window_s) / limit.requests)
            await self._pause_for(bucket, 0, slot_ms, "ROLLING_EXHAUSTED")
        if _int_header(lowered, "daily-remaining") == 0 and not is_portal_bucket(bucket):
            reset_s = next_daily_reset(await self._now_s(), self._daily_zone)
            await self.pause(bucket, reset_s, "DAILY")

    async def after_429(
        self,
        bucket: str,
        policy: str,
        headers: Mapping[str, str],
        retry_after_s: float | None,
    ) -> Pause:
        """Pause `bucket` once after a 429 with this `policy`; return the pause.

        The one rule for how long (see `pause_after_429`): Retry-After, else the window that the
        headers (or the bucket's budget) give, or the daily reset. Raises redis errors.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        reported = await self._learn(bucket, lowered)
        window_s = (reported or self._budgets.get(bucket, self._limit)).window_s
        now_s = await self._now_s()
        daily = policy == "DAILY" and not is_portal_bucket(bucket)
        until_s = pause_after_429(
            now_s,
            policy=policy,
            retry_after_s=retry_after_s,
            window_s=window_s + self._pad_ms / 1000,
            daily_reset_s=next_daily_reset(now_s, self._daily_zone) if daily else None,
        )
        await self.pause(bucket, until_s, policy)
        if daily:
            midnight = datetime.fromtimestamp(until_s, self._daily_zone)
            why = f"until {midnight:%Y-%m-%d %H:%M} {self._daily_zone.key} ({self._daily_setting})"
        elif retry_after_s is not None:
            why = f"for {until_s - now_s:.1f}s (Retry-After)"
        else:
            why = f"for {until_s - now_s:.1f}s (one {window_s:g}s window, no Retry-After)"
        return Pause(until_s, why)

    async def _learn(
        self, bucket: str, lowered: Mapping[str, str], sent_at: float | None = None
    ) -> RateLimit | None:
        """Store the budget HubSpot reports and the others' share; return the reported budget."""
        max_requests = _int_header(lowered, "max")
        interval_ms = _int_header(lowered, "interval-milliseconds")
        if not (max_requests and interval_ms and max_requests > 0 and interval_ms > 0):
            return None
        # HubSpot repeats the same figures on every answer: write them only when they change or
        # half their TTL has passed, not once per request.
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
        remaining = _int_header(lowered, "remaining")
        if self._share and remaining is not None and 0 <= remaining <= max_requests:
            keys = [self._key(bucket, "log"), self._key(bucket, "share")]
            sent_ms = 0 if sent_at is None else math.floor(sent_at * 1000)
            args = [max_requests - remaining, interval_ms, sent_ms, self._pad_ms]
            await self._share_script(keys, args)
        return RateLimit(max_requests, interval_ms / 1000)

    async def ensure_budget(self, bucket: str, limit: RateLimit) -> None:
        """Set `bucket`'s configured budget unless this process wrote it within a day.

        Cheap to call before every use of the bucket (OAuth: on each token fetch). Raises redis
        errors.
        """
        written = self._conf_written.get(bucket)
        if written is not None and time.monotonic() - written <= _CONF_EVERY_S:
            return
        await self.budget_for(bucket, limit)
        self._conf_written[bucket] = time.monotonic()

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
        log, pause, conf, obs, share = self._keys(bucket)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(pause)
            pipe.hgetall(conf)
            pipe.hgetall(obs)
            pipe.hgetall(share)
            (seconds, microseconds), paused, configured, observed, shared = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(microseconds) // 1000
        limit, others = self._effective(configured, observed, shared, bucket, now_ms)
        budget, window_s = self._granted(limit), limit.window_s
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(log, f"({now_ms - _window_ms(window_s) - self._pad_ms}", now_ms)
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
            others=others,
        )

    def _effective(
        self,
        configured: Mapping[Any, Any],
        observed: Mapping[Any, Any],
        shared: Mapping[Any, Any],
        bucket: str,
        now_ms: int,
    ) -> tuple[RateLimit, float]:
        """Return the budget acquire enforces (before margin) and the others' estimate.

        Must match rate_limit_acquire.lua.
        """
        reported = self._limit_from(observed)
        if reported is None:
            return self._limit_from(configured) or self._budgets.get(bucket, self._limit), 0.0
        window_ms = _window_ms(reported.window_s)
        ceiling_ms = _window_ms(self._ceiling.window_s)
        ceiling = max(1, math.floor(self._ceiling.requests * window_ms / ceiling_ms + 1e-9))
        requests, others = min(reported.requests, ceiling), 0.0
        fields = {as_text(k): as_text(v) for k, v in shared.items()}
        if self._share and "others" in fields and "at_ms" in fields:
            age_ms = max(0, now_ms - int(fields["at_ms"]))
            others = held_estimate(float(fields["others"]), age_ms / 1000, window_ms / 1000)
            requests = shared_budget(requests, others)
        return RateLimit(requests, reported.window_s), others

    def _granted(self, limit: RateLimit) -> int:
        # Must match granted() in rate_limit_acquire.lua.
        return max(1, math.floor(limit.requests * (1 - self._margin) + 1e-9))

    @staticmethod
    def _limit_from(fields: Mapping[Any, Any]) -> RateLimit | None:
        decoded = {as_text(k): as_text(v) for k, v in fields.items()}
        try:
            return RateLimit(int(decoded["req"]), int(decoded["window_ms"]) / 1000)
        except (KeyError, ValueError):
            return None
