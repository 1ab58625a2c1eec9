"""The request recorder: every API request in arrival order, plus running counters."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

__all__ = ["RequestRecorder"]


class RequestRecorder:
    """Appends one dict per API request when it arrives and completes it when answered.

    Records never hold credentials: no headers, and token requests keep only non-secret fields.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every record and counter."""
        self.records: list[dict[str, Any]] = []
        self.by_status: Counter[int] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.creates = 0
        self.upserts = 0
        self.batch_upserts = 0
        self.batch_inputs = 0
        self.injected = 0
        self.hung = 0
        self.closed = 0

    def open(self, method: str, path: str, query: dict[str, str]) -> dict[str, Any]:
        """Record a request as it arrives; return the record to complete later."""
        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": query,
            "body": None,
            "status": None,
            "receivedAt": time.time(),
            "answeredAt": None,
            "identity": None,
            "closed": False,
        }
        self.records.append(record)
        return record

    def answer(self, record: dict[str, Any], status: int) -> None:
        """Mark `record` answered with `status`."""
        record["status"] = status
        record["answeredAt"] = time.time()
        self.by_status[status] += 1

    def drop(self, record: dict[str, Any]) -> None:
        """Mark `record` as ended by closing the connection without an answer."""
        record["closed"] = True
        record["answeredAt"] = time.time()
        self.closed += 1

    def since(self, index: int) -> list[dict[str, Any]]:
        """Return the records from position `index` on."""
        return self.records[max(0, index) :]

    def stats(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data."""
        return {
            "requests": len(self.records),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "creates": self.creates,
            "upserts": self.upserts,
            "batch_upserts": self.batch_upserts,
            "batch_inputs": self.batch_inputs,
            "rate_limited": dict(self.rate_limited),
            "injected_failures": self.injected,
            "hung": self.hung,
            "closed": self.closed,
        }
