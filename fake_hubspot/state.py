"""The fake's whole in-memory state: tokens, events, records, faults, rate-limit windows."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web

from fake_hubspot.auth import Authenticator
from fake_hubspot.batch import BatchUpsert
from fake_hubspot.config import BatchConfig, FakeConfig
from fake_hubspot.events import EventStore
from fake_hubspot.faults import FaultPlan
from fake_hubspot.ratelimit import OtherClient, RateLimiter
from fake_hubspot.recorder import RequestRecorder
from fake_hubspot.validator import BodyValidator

__all__ = ["STATE", "FakeState"]

_HANG_S = 3600.0


class FakeState:
    """Everything the handlers read and the control routes change; `reset()` restores startup."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.validator = BodyValidator()
        self.events = EventStore()
        self.recorder = RequestRecorder()
        self._hanging: set[asyncio.Future[None]] = set()
        self._epoch = 0
        self.other_client: OtherClient | None = None
        self._configure(config)

    def _configure(self, config: FakeConfig) -> None:
        self.auth = Authenticator(config)
        if self.other_client is not None:
            self.other_client.stop()
            self.other_client = None
        self.limiter = RateLimiter(config.rate_limit, config.daily_limit, config.daily_timezone)
        self.faults = FaultPlan(config.latency_ms)
        self.batch: BatchConfig = config.batch

    def batch_upsert(self) -> BatchUpsert:
        """Return the batch upsert as configured now (size, answer status, pointer, order)."""
        return BatchUpsert(self.events, self.validator, self.faults.refused, self.batch)

    def reset(self) -> None:
        """Release hung requests and return everything to the startup configuration."""
        self._epoch += 1
        self.release_hung()
        self.events.clear()
        self.recorder.clear()
        self._configure(self.config)

    async def hang(self) -> bool:
        """Wait (up to an hour) until `release_hung()` or shutdown ends the wait.

        Return False when a `reset()` happened meanwhile (the request's record is gone).
        """
        epoch = self._epoch
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hanging.add(future)
        self.recorder.hung += 1
        try:
            await asyncio.wait_for(future, _HANG_S)
        except TimeoutError:
            pass
        finally:
            self._hanging.discard(future)
        return epoch == self._epoch

    def release_hung(self) -> None:
        """End every hang; those requests then get their connection closed without answer."""
        for future in self._hanging:
            if not future.done():
                future.set_result(None)
        self._hanging.clear()

    def stats(self) -> dict[str, Any]:
        """Return `/_fake/stats`: counts by status, creates, 429s, refreshes, hangs, faults."""
        stats = self.recorder.stats()
        stats["hanging"] = len(self._hanging)
        stats["events"] = len(self.events)
        stats["token_refreshes"] = {str(p): n for p, n in self.auth.refreshes.items()}
        stats["faults"] = self.faults.pending()
        stats["batch"] = dataclasses.asdict(self.batch)
        stats["other_client"] = self.other_client.stats() if self.other_client else None
        return stats


STATE = web.AppKey("fake_hubspot_state", FakeState)
