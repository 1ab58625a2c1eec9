"""Read eventq's outcome stream with a Redis consumer group: each outcome once per group.

Every job that ends (delivered or dead-lettered) adds one entry to the stream `<prefix>:outcomes`;
its field `outcome` is JSON: jobId, state, objectId, externalAccountId, externalEventId,
deadLetter {id, reason, httpStatus, message} (dead-lettered only), attempts, at.

    python examples/outcome_consumer.py --redis redis://localhost:6379/0 --group billing

Readers of one group share the entries (each sees an entry once); another group sees them all
again. An entry is acknowledged (XACK) after it is handled, so a reader that dies before that
reads it again (its pending entries come first) when it restarts with the same `--consumer`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import redis


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group at the stream's start (a no-op when it exists)."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def read_outcomes(
    client: redis.Redis, stream: str, group: str, consumer: str, *, block_ms: int | None = 5000
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (entry id, outcome) for this consumer: its unacknowledged entries, then new ones.

    Stops when no new entry came within `block_ms` (None: blocks forever).
    """
    start = "0"  # this consumer's pending entries first, then ">" (never delivered to the group)
    while True:
        answer = client.xreadgroup(group, consumer, {stream: start}, count=100, block=block_ms)
        entries = answer[0][1] if answer else []
        if not entries:
            if start == ">":
                return
            start = ">"
            continue
        for entry_id, fields in entries:
            if not fields:  # trimmed from the stream (MAXLEN) while pending: nothing to read
                client.xack(stream, group, entry_id)
                continue
            yield _text(entry_id), json.loads(fields[b"outcome"])
        if start != ">":  # past the pending entries just read (still pending until acked)
            start = _text(entries[-1][0])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("EVENTQ_REDIS_URL", "redis://localhost"))
    parser.add_argument("--prefix", default=os.environ.get("EVENTQ_KEY_PREFIX", "eventq"))
    parser.add_argument("--group", default="outcome-consumer")
    parser.add_argument("--consumer", default=socket.gethostname())
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis)
    stream = f"{args.prefix}:outcomes"
    ensure_group(client, stream, args.group)
    entries = read_outcomes(client, stream, args.group, args.consumer, block_ms=None)
    for entry_id, outcome in entries:
        print(entry_id, outcome["jobId"], outcome["state"], outcome.get("objectId"), flush=True)
        client.xack(stream, args.group, entry_id)  # handled: not read again


if __name__ == "__main__":
    main()
