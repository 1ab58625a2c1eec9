"""The fault plan: latency, injected statuses, hangs, dropped connections and refused events."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultPlan", "Injection"]


@dataclass(slots=True)
class Injection:
    """An injected answer: status, extra headers, optional body (None = HubSpot error shape)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    include_get: bool = False
    remaining: int = 1


class FaultPlan:
    """What goes wrong next. Everything here is cheap to consult when nothing is planned."""

    def __init__(self, latency_ms: float) -> None:
        self.set_latency(latency_ms, None, None)
        self._next: deque[Injection] = deque()
        self.failure_rate = 0.0
        self.failure_status = 503
        self.hang_next = 0
        self.close_next = 0
        self.close_rate = 0.0
        self.refused: dict[str, str] = {}

    def set_latency(self, ms: float | None, min_ms: float | None, max_ms: float | None) -> None:
        """Delay API answers by `ms`, or by a uniform random time in [`min_ms`, `max_ms`]."""
        if min_ms is not None or max_ms is not None:
            low = float(min_ms if min_ms is not None else 0.0)
            high = float(max_ms if max_ms is not None else low)
            if low < 0 or high < low:
                raise ValueError("latency needs 0 <= min_ms <= max_ms")
            self._latency: tuple[float, float] = (low / 1000.0, high / 1000.0)
        else:
            fixed = float(ms or 0.0)
            if fixed < 0:
                raise ValueError("latency must not be negative")
            self._latency = (fixed / 1000.0, fixed / 1000.0)

    def latency_ms(self) -> dict[str, float]:
        """Return the configured latency range in milliseconds."""
        return {"min_ms": self._latency[0] * 1000.0, "max_ms": self._latency[1] * 1000.0}

    async def delay(self) -> None:
        """Sleep for the configured latency (no-op when it is zero)."""
        low, high = self._latency
        if high > 0:
            await asyncio.sleep(low if low == high else random.uniform(low, high))  # noqa: S311

    def fail_next(self, injection: Injection) -> None:
        """Answer the next `injection.remaining` matching requests with `injection`.

        Writes (create POST and upsert PUT) match; GETs only with `include_get`.
        """
        if not 100 <= injection.status <= 599:
            raise ValueError("status must be an HTTP status between 100 and 599")
        if injection.remaining > 0:
            self._next.append(injection)

    def set_failure_rate(self, rate: float, status: int) -> None:
        """Answer a random fraction `rate` of writes (create and upsert) with `status`."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status between 100 and 599")
        self.failure_rate, self.failure_status = rate, status

    def take_injection(self, *, is_create: bool) -> Injection | None:
        """Return the injected answer for this request, if any, consuming it."""
        if self._next:
            head = self._next[0]
            if is_create or head.include_get:
                head.remaining -= 1
                if head.remaining <= 0:
                    self._next.popleft()
                return head
        if is_create and self.failure_rate > 0.0 and random.random() < self.failure_rate:  # noqa: S311
            return Injection(self.failure_status)
        return None

    def take_hang(self) -> bool:
        """Return whether this create request must hang, consuming one planned hang."""
        if self.hang_next > 0:
            self.hang_next -= 1
            return True
        return False

    def set_close_rate(self, rate: float) -> None:
        """Drop the connection after storing a random fraction `rate` of writes."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        self.close_rate = rate

    def take_close(self) -> bool:
        """Return whether to drop the connection after this stored write (uses a planned one)."""
        if self.close_next > 0:
            self.close_next -= 1
            return True
        return self.close_rate > 0.0 and random.random() < self.close_rate  # noqa: S311

    def refuse(self, external_event_id: str, message: str | None) -> None:
        """Refuse every write of the event with this `externalEventId` (a 400 for POST and PUT,
        an entry in `errors` within a batch) with `message`; None stops refusing it."""
        if message is None:
            self.refused.pop(external_event_id, None)
        else:
            self.refused[external_event_id] = message

    def pending(self) -> dict[str, Any]:
        """Return what is still planned (for `/_fake/stats`)."""
        return {
            "fail_next": sum(item.remaining for item in self._next),
            "hang_next": self.hang_next,
            "close_after_create": self.close_next,
            "close_rate": self.close_rate,
            "failure_rate": self.failure_rate,
            "failure_status": self.failure_status,
            "latency": self.latency_ms(),
            "refused": sorted(self.refused),
        }
