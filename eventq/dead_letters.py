"""The dead-letter store in Redis: add, list with filters and cursors, show, count, delete.

This module owns the DLQ's keys, its writes and its reads. Workers add an entry with
`queue_add_entry`, queued on the same transaction as the job's state change
(`eventq.jobs.JobStore.mark_dead_lettered`); admins read them here from the CLI and the HTTP
service. Nothing is ever dropped silently: an entry leaves
only by replay (after its new job is accepted) or by an explicit purge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis

from eventq.keys import Keys, is_valid_id
from eventq.records import DeadLetter
from eventq.redis_io import as_text as _text
from eventq.redis_io import glob_escape

__all__ = ["DeadLetterFilter", "DeadLetterPage", "DeadLetterStore", "queue_add_entry"]

_BATCH = 200


def queue_add_entry(pipe: Any, keys: Keys, entry: DeadLetter) -> None:
    """Queue on `pipe` (sync or async, usually a transaction) the commands that add `entry`."""
    pipe.set(keys.dlq_entry(entry.id), entry.model_dump_json())
    pipe.zadd(keys.dlq, {entry.id: entry.deadLetteredAt})


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which entries to show; every given criterion must match."""

    reason: str | None = None
    http_status: int | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None

    def matches(self, entry: DeadLetter) -> bool:
        """Return True when `entry` meets every criterion."""
        if self.reason and entry.reason != self.reason:
            return False
        if self.http_status is not None and entry.httpStatus != self.http_status:
            return False
        if self.text:
            haystack = entry.model_dump_json().lower()
            if self.text.lower() not in haystack:
                return False
        return True


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of entries, newest first, and the cursor of the next page (None at the end)."""

    entries: list[DeadLetter]
    next_cursor: str | None


class DeadLetterStore:
    """Synchronous DLQ access for admin tools (CLI, HTTP service via a thread)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def count(self) -> int:
        """Return how many entries the DLQ holds."""
        return int(cast(int, self._redis.zcard(self._keys.dlq)))

    def get(self, entry_id: str) -> DeadLetter | None:
        """Return one entry, or None when it does not exist or `entry_id` is malformed."""
        if not is_valid_id(entry_id):
            return None  # no key is built from it
        raw = cast(bytes | None, self._redis.get(self._keys.dlq_entry(entry_id)))
        return None if raw is None else DeadLetter.model_validate_json(raw)

    def ids_starting(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` entry ids that start with `prefix`, sorted.

        Reads the DLQ's index (ZSCAN MATCH on its sorted set of ids), never the entries.
        """
        found: set[str] = set()
        pattern = glob_escape(prefix) + "*"
        for member, _ in self._redis.zscan_iter(self._keys.dlq, match=pattern, count=1000):
            found.add(_text(member))
            if len(found) >= limit:
                break
        return sorted(found)

    def count_by_reason(self, max_entries: int) -> dict[str, int]:
        """Return how many of the oldest `max_entries` entries have each reason."""
        tally: dict[str, int] = {}
        ids = cast(list[bytes | str], self._redis.zrange(self._keys.dlq, 0, max_entries - 1))
        for start in range(0, len(ids), 500):
            chunk = [self._keys.dlq_entry(_text(i)) for i in ids[start : start + 500]]
            for raw in cast(list[bytes | None], self._redis.mget(chunk)):
                if raw is not None:
                    reason = str(json.loads(raw).get("reason"))
                    tally[reason] = tally.get(reason, 0) + 1
        return tally

    def save(self, entry: DeadLetter) -> None:
        """Overwrite an existing entry (e.g. to record why a replay was refused)."""
        self._redis.set(self._keys.dlq_entry(entry.id), entry.model_dump_json())

    def delete(self, entry_id: str) -> bool:
        """Delete one entry; returns False when it did not exist or `entry_id` is malformed."""
        if not is_valid_id(entry_id):
            return False
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.dlq, entry_id)
            pipe.delete(self._keys.dlq_entry(entry_id))
            removed, _ = pipe.execute()
        return bool(removed)

    def page(
        self, filters: DeadLetterFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> DeadLetterPage:
        """Return up to `limit` matching entries, newest first, starting after `cursor`."""
        filters = filters or DeadLetterFilter()
        entries: list[DeadLetter] = []
        last: str | None = None
        for score, entry in self._scan(filters, cursor):
            if len(entries) == limit:
                return DeadLetterPage(entries, last)
            entries.append(entry)
            last = f"{score!r}:{entry.id}"
        return DeadLetterPage(entries, None)

    def iter_matching(self, filters: DeadLetterFilter | None = None) -> Iterator[DeadLetter]:
        """Yield every matching entry, newest first."""
        for _, entry in self._scan(filters or DeadLetterFilter(), None):
            yield entry

    def _scan(
        self, filters: DeadLetterFilter, cursor: str | None
    ) -> Iterator[tuple[float, DeadLetter]]:
        high: str = "+inf" if filters.until is None else str(filters.until)
        low: str = "-inf" if filters.since is None else str(filters.since)
        after_id: str | None = None
        if cursor:
            score_text, _, after_id = cursor.partition(":")
            high = score_text
        while True:
            rows = self._redis.zrevrangebyscore(
                self._keys.dlq, high, low, start=0, num=_BATCH + 1, withscores=True
            )
            ids = [_text(r[0]) for r in rows]
            if after_id is not None:
                # skip up to and including the cursor's entry (same score may repeat)
                if after_id in ids:
                    del rows[: ids.index(after_id) + 1]
                after_id = None
            if not rows:
                return
            yield from self._load(rows, filters)
            if len(ids) <= _BATCH:
                return
            high = f"({rows[-1][1]!r}"

    def _load(
        self, rows: list[tuple[bytes | str, float]], filters: DeadLetterFilter
    ) -> Iterator[tuple[float, DeadLetter]]:
        keys = [self._keys.dlq_entry(_text(r[0])) for r in rows]
        for (_, score), raw in zip(rows, cast(list[Any], self._redis.mget(keys)), strict=True):
            if raw is None:
                continue
            entry = DeadLetter.model_validate_json(raw)
            if filters.matches(entry):
                yield score, entry
