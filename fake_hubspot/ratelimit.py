"""HubSpot-style rate limiting: a rolling window per app or portal, a daily budget per app.

As at HubSpot, OAuth identities (`portal:…`) have no daily budget and get no daily headers.
`OtherClient` simulates another integration of the same app spending part of a budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fake_hubspot.config import RateLimit

__all__ = ["DAILY", "TEN_SECONDLY", "Decision", "OtherClient", "RateLimiter"]

TEN_SECONDLY = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"


@dataclass(slots=True)
class Decision:
    """The verdict for one request: the policy that rejected it (None = allowed) and headers."""

    policy: str | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Bucket:
    hits: deque[float] = field(default_factory=deque)
    day: int = -1
    day_count: int = 0


class RateLimiter:
    """Counts requests per identity (`app:…` or `portal:…`) and decides 429s.

    Rejected requests are not counted, so a client that backs off recovers after one window.
    The daily budget (private apps only) resets at midnight in `daily_timezone`.
    """

    def __init__(
        self, limit: RateLimit | None, daily: int | None, daily_timezone: str = "UTC"
    ) -> None:
        self.configure(limit, daily, daily_timezone)
        self._portal_limits: dict[int, RateLimit] = {}
        self._buckets: dict[str, _Bucket] = {}

    def configure(
        self, limit: RateLimit | None, daily: int | None, daily_timezone: str = "UTC"
    ) -> None:
        """Set the global rolling limit (None = off), daily budget (None = none) and its zone.

        Raises ValueError for a budget below 1 or an unknown IANA zone.
        """
        if daily is not None and daily <= 0:
            raise ValueError("the daily budget must be positive")
        try:
            zone = ZoneInfo(daily_timezone)
        except (LookupError, ValueError) as exc:  # ZoneInfoNotFoundError is a LookupError
            raise ValueError(f"unknown time zone {daily_timezone!r}") from exc
        self.limit = limit
        self.daily = daily
        self.daily_zone = zone

    def configure_portal(self, portal_id: int, limit: RateLimit | None) -> None:
        """Give `portal_id` its own rolling limit; None returns it to the global limit."""
        if limit is None:
            self._portal_limits.pop(portal_id, None)
        else:
            self._portal_limits[portal_id] = limit

    def _bucket(self, identity: str) -> _Bucket:
        bucket = self._buckets.get(identity)
        if bucket is None:
            bucket = self._buckets[identity] = _Bucket()
        return bucket

    def _daily_spent(self, bucket: _Bucket, daily: int) -> bool:
        today = datetime.now(self.daily_zone).date().toordinal()
        if bucket.day != today:
            bucket.day, bucket.day_count = today, 0
        return bucket.day_count >= daily

    @staticmethod
    def _rolling(bucket: _Bucket, limit: RateLimit, count: bool, headers: dict[str, str]) -> bool:
        """Prune the window, count the request if `count` and room is left; return if it was."""
        now = time.monotonic()
        hits = bucket.hits
        horizon = now - limit.window_ms / 1000.0
        while hits and hits[0] <= horizon:
            hits.popleft()
        admitted = count and len(hits) < limit.requests
        if admitted:
            hits.append(now)
        headers["X-HubSpot-RateLimit-Max"] = str(limit.requests)
        headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, limit.requests - len(hits)))
        headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(limit.window_ms)
        return admitted

    def check(self, identity: str, portal_id: int | None) -> Decision:
        """Count one request by `identity` unless a policy rejects it; return the verdict."""
        limit = self.limit
        if portal_id is not None and portal_id in self._portal_limits:
            limit = self._portal_limits[portal_id]
        daily = self.daily if portal_id is None else None  # OAuth calls: no daily limit
        if limit is None and daily is None:
            return Decision(None)
        bucket = self._bucket(identity)
        headers: dict[str, str] = {}
        policy = DAILY if daily is not None and self._daily_spent(bucket, daily) else None
        if limit is not None and not self._rolling(bucket, limit, policy is None, headers):
            policy = policy or TEN_SECONDLY
        if daily is not None:
            if policy is None:
                bucket.day_count += 1
            headers["X-HubSpot-RateLimit-Daily"] = str(daily)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, daily - bucket.day_count))
        return Decision(policy, headers)


class OtherClient:
    """Another client of an identity's budget: `requests` evenly spaced per `window_ms`.

    It spends the budget as HubSpot counts it (through `RateLimiter.check`) but is not recorded
    as an API request; it counts its successes and 429s, and does not retry.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        identity: str,
        portal_id: int | None,
        requests: int,
        window_ms: int,
    ) -> None:
        if requests <= 0 or window_ms <= 0:
            raise ValueError("the other client needs a positive rate")
        self.identity, self.requests, self.window_ms = identity, requests, window_ms
        self.sent = self.ok = self.rate_limited = 0
        self._limiter, self._portal_id = limiter, portal_id
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        every_s = self.window_ms / 1000 / self.requests
        start = time.monotonic()
        while True:
            decision = self._limiter.check(self.identity, self._portal_id)
            self.sent += 1
            if decision.policy is None:
                self.ok += 1
            else:
                self.rate_limited += 1
            # on a fixed schedule, so a late wake-up does not lower the rate
            await asyncio.sleep(max(0.0, start + self.sent * every_s - time.monotonic()))

    def stop(self) -> None:
        """Stop spending."""
        self._task.cancel()

    def stats(self) -> dict[str, Any]:
        """Return what it sent, and how much of it HubSpot admitted or refused."""
        return {
            "identity": self.identity,
            "requests": self.requests,
            "window_ms": self.window_ms,
            "sent": self.sent,
            "ok": self.ok,
            "rate_limited": self.rate_limited,
        }
