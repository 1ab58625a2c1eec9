"""The dead-letter store in Redis: add, list with filters and cursors, show, count, delete.

This module owns the DLQ's keys, its writes and its reads. Workers add an entry with
`queue_add_entry`, queued on the same transaction as the job's state change
(`eventq.jobs.JobStore.mark_dead_lettered`); admins read them here from the CLI and the HTTP
service. Nothing is ever dropped silently: an entry leaves
only by replay (after its new job is accepted) or by an explicit purge.

Counts by reason and by group (reason + HubSpot's message) are kept on write, in the same
transaction as the entry's add, change or removal, so the overview and `/metrics` read them
without scanning the entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from eventq.keys import Keys, is_valid_id
from eventq.records import DeadLetter
from eventq.redis_io import as_text as _text
from eventq.redis_io import glob_escape

__all__ = [
    "DeadLetterCounts",
    "DeadLetterFilter",
    "DeadLetterGroup",
    "DeadLetterPage",
    "DeadLetterStore",
    "group_message",
    "queue_add_entry",
    "read_counts",
    "read_counts_async",
]

_BATCH = 200
MESSAGE_CHARS = 200  # a group's message is HubSpot's, cut to this length
_GROUP_SEP = "\x1f"  # between reason and message in a group's member name


def group_message(entry: DeadLetter) -> str:
    """Return the message `entry` is grouped by: HubSpot's (or ours), one line, cut short."""
    return " ".join(entry.error.message.split())[:MESSAGE_CHARS]


def _group(entry: DeadLetter) -> str:
    return f"{entry.reason}{_GROUP_SEP}{group_message(entry)}"


def _queue_count(pipe: Any, keys: Keys, entry: DeadLetter, step: int) -> None:
    pipe.hincrby(keys.dlq_reasons, entry.reason, step)
    pipe.zincrby(keys.dlq_groups, step, _group(entry))
    if step < 0:
        pipe.zremrangebyscore(keys.dlq_groups, "-inf", 0)


def queue_add_entry(pipe: Any, keys: Keys, entry: DeadLetter) -> None:
    """Queue on `pipe` (sync or async, usually a transaction) the commands that add `entry`."""
    pipe.set(keys.dlq_entry(entry.id), entry.model_dump_json())
    pipe.zadd(keys.dlq, {entry.id: entry.deadLetteredAt})
    _queue_count(pipe, keys, entry, 1)


@dataclass(frozen=True)
class DeadLetterGroup:
    """Entries that share a reason and a message, and how many there are."""

    reason: str
    message: str
    count: int


@dataclass(frozen=True)
class DeadLetterCounts:
    """The DLQ's size, its counts by reason and its largest groups (all kept on write)."""

    total: int
    by_reason: dict[str, int]
    groups: list[DeadLetterGroup]


def _queue_read_counts(pipe: Any, keys: Keys, top: int) -> None:
    pipe.zcard(keys.dlq)
    pipe.hgetall(keys.dlq_reasons)
    pipe.zrevrange(keys.dlq_groups, 0, top - 1, withscores=True)


def _parse_counts(replies: list[Any]) -> DeadLetterCounts:
    total, reasons, rows = replies
    groups = []
    for member, score in rows:
        reason, _, message = _text(member).partition(_GROUP_SEP)
        groups.append(DeadLetterGroup(reason, message, int(score)))
    by_reason = {_text(k): int(v) for k, v in reasons.items() if int(v) > 0}
    return DeadLetterCounts(int(total), by_reason, groups)


def read_counts(client: redis.Redis, keys: Keys, top: int = 10) -> DeadLetterCounts:
    """Return the DLQ's counts and its `top` largest groups (one round trip, no scan)."""
    with client.pipeline(transaction=False) as pipe:
        _queue_read_counts(pipe, keys, top)
        return _parse_counts(pipe.execute())


async def read_counts_async(client: aioredis.Redis, keys: Keys, top: int = 10) -> DeadLetterCounts:
    """Return `read_counts` from an asyncio client; raises redis.RedisError."""
    async with client.pipeline(transaction=False) as pipe:
        _queue_read_counts(pipe, keys, top)
        return _parse_counts(await pipe.execute())


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which entries to show; every given criterion must match."""

    reason: str | None = None
    http_status: int | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    message: str | None = None  # a group's message (`group_message`), matched whole

    def matches(self, entry: DeadLetter) -> bool:
        """Return True when `entry` meets every criterion."""
        if self.reason and entry.reason != self.reason:
            return False
        if self.message is not None and group_message(entry) != self.message:
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

    def recount(self) -> DeadLetterCounts:
        """Rebuild the counts kept on write from the entries themselves; returns them.

        For a DLQ written before the counts existed (or counts lost with a partial restore):
        reads every entry once. An entry added or removed while it runs may be miscounted;
        run it again when the DLQ is quiet.
        """
        reasons: dict[str, int] = {}
        groups: dict[str, int] = {}
        for entry in self.iter_matching():
            reasons[entry.reason] = reasons.get(entry.reason, 0) + 1
            groups[_group(entry)] = groups.get(_group(entry), 0) + 1
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.dlq_reasons, self._keys.dlq_groups)
            if reasons:
                pipe.hset(self._keys.dlq_reasons, mapping=reasons)
                pipe.zadd(self._keys.dlq_groups, groups)
            pipe.execute()
        return read_counts(self._redis, self._keys, top=len(groups) or 1)

    def save(self, entry: DeadLetter) -> None:
        """Overwrite an existing entry (e.g. to record why a replay was refused); an entry
        removed meanwhile stays removed."""
        key = self._keys.dlq_entry(entry.id)

        def write(pipe: Any) -> None:
            raw = pipe.get(key)
            pipe.multi()
            if raw is not None:
                pipe.set(key, entry.model_dump_json())
                _queue_count(pipe, self._keys, DeadLetter.model_validate_json(raw), -1)
                _queue_count(pipe, self._keys, entry, 1)

        self._redis.transaction(write, key)

    def delete(self, entry_id: str) -> bool:
        """Delete one entry; returns False when it did not exist or `entry_id` is malformed."""
        if not is_valid_id(entry_id):
            return False
        key = self._keys.dlq_entry(entry_id)

        def remove(pipe: Any) -> None:
            raw = pipe.get(key)
            pipe.multi()
            pipe.zrem(self._keys.dlq, entry_id)
            pipe.delete(key)
            if raw is not None:
                _queue_count(pipe, self._keys, DeadLetter.model_validate_json(raw), -1)

        replies = cast(list[Any], self._redis.transaction(remove, key))
        return bool(replies[0])

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
