"""What the workers share in Redis besides jobs, read for the admin overview.

Each limiter bucket's use and pause (`worker.rate_limit`) and the breaker of the HubSpot base
URL (`worker.circuit_breaker`), read through their owners' functions. The HTTP service
(`producers.cluster_state`) takes this reader from the command line that starts it, so the
service's own package does not import the worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from eventq.accounts import AccountsWatcher
from eventq.keys import Keys
from eventq.settings import Settings
from worker.circuit_breaker import BreakerView, read_breaker
from worker.rate_limit import RateLimiter, bucket_for_portal, bucket_for_token

__all__ = ["BucketUse", "SharedStateReader", "shared_state_factory"]


@dataclass(frozen=True)
class BucketUse:
    """One limiter bucket: which account it is (`label`, never a token) and its use now."""

    label: str
    budget: int
    window_s: float
    used: int
    reserved: int
    paused_until: float | None
    reason: str | None


class SharedStateReader:
    """Reads the limiter buckets and breaker of one deployment (its settings and accounts)."""

    def __init__(
        self, settings: Settings, client: aioredis.Redis, accounts: AccountsWatcher | None
    ) -> None:
        self._settings = settings
        self._redis = client
        self._keys = Keys(settings.key_prefix)
        self._limiter = RateLimiter.from_settings(client, settings)
        self._accounts = accounts

    def bucket_names(self) -> list[tuple[str, str]]:
        """Return (label, bucket) of every limiter bucket this deployment spends from."""
        found = []
        token = self._settings.hubspot_access_token
        if token is not None:
            found.append(("private app", bucket_for_token(token.get_secret_value())))
        portals = [] if self._accounts is None else self._accounts.current().portal_ids
        found += [(f"portal {p}", bucket_for_portal(p)) for p in portals]
        return found

    async def buckets(self) -> list[BucketUse]:
        """Return each bucket's use and pause; raises redis.RedisError."""
        names = self.bucket_names()
        states = await asyncio.gather(*(self._limiter.state(bucket) for _, bucket in names))
        return [
            BucketUse(label, s.budget, s.window_s, s.used, s.reserved, s.paused_until, s.reason)
            for (label, _), s in zip(names, states, strict=True)
        ]

    async def breakers(self) -> list[BreakerView]:
        """Return the breaker of the configured HubSpot base URL; raises redis.RedisError."""
        return [await read_breaker(self._redis, self._keys, self._settings.hubspot_base_url)]


def shared_state_factory(settings: Settings) -> Callable[[aioredis.Redis], SharedStateReader]:
    """Return what makes a SharedStateReader from the HTTP service's Redis client."""
    accounts = AccountsWatcher(settings) if settings.oauth_enabled else None
    return lambda client: SharedStateReader(settings, client, accounts)
