"""HubSpot-style rate limiting: a rolling window and a daily budget per app or portal."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from fake_hubspot.config import RateLimit

__all__ = ["DAILY", "TEN_SECONDLY", "Decision", "RateLimiter"]

TEN_SECONDLY = "TEN_SECONDLY_ROLLING"
DAILY = "DAILY"
_DAY_S = 86_400


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
    The daily budget resets at midnight UTC.
    """

    def __init__(self, limit: RateLimit | None, daily: int | None) -> None:
        self.configure(limit, daily)
        self._portal_limits: dict[int, RateLimit] = {}
        self._buckets: dict[str, _Bucket] = {}

    def configure(self, limit: RateLimit | None, daily: int | None) -> None:
        """Set the global rolling limit (None = off) and daily budget (None = none)."""
        if daily is not None and daily <= 0:
            raise ValueError("the daily budget must be positive")
        self.limit = limit
        self.daily = daily

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
        today = int(time.time() // _DAY_S)
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
        daily = self.daily
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
