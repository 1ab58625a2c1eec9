"""Overview benchmark: latency of `GET /v1/overview` with 100,000 dead letters stored.

Starts its own `eventq serve` on a free port against Redis under a unique key prefix (no
worker), stores the dead letters as workers do (`queue_add_entry`, so the counts kept on write
are there; 1,000 distinct HubSpot messages in four reasons), then asks for the overview from one
client, one request at a time, and reports p50/p90/p99. For contrast it times one scan of the
same DLQ (reading every entry), which is what the overview never does. Prints one JSON object,
writes it to bench/results/overview.json, then deletes every key it made.

    .venv/bin/python bench/overview_bench.py            # 100,000 entries, 1,000 requests
    .venv/bin/python bench/overview_bench.py --quick    # 5,000 entries, 200 requests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/overview_bench.py`

from bench.ingest_bench import Server, percentile  # noqa: E402
from eventq.dead_letters import DeadLetterStore, queue_add_entry  # noqa: E402
from eventq.keys import Keys  # noqa: E402
from eventq.records import AttemptRecord, DeadLetter, HubSpotErrorInfo  # noqa: E402
from eventq.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "overview.json"
QUICK_RESULTS = ROOT / "bench" / "results" / "quick" / "overview.json"
TARGET_P99_MS = 50.0
REASONS = ("rejected", "invalid", "exhausted", "auth")
MESSAGES = 1000


def entry(n: int, now: float) -> DeadLetter:
    reason = REASONS[n % len(REASONS)]
    at = now - n / 10
    return DeadLetter(
        id=f"bench-{n:07d}",
        jobId=f"bench-job-{n:07d}",
        payload={"eventName": f"Webinar {n}", "externalEventId": f"evt-{n}"},
        reason=reason,  # type: ignore[arg-type]
        httpStatus=400 if reason == "rejected" else None,
        error=HubSpotErrorInfo(message=f"property {n % MESSAGES} is not allowed here"),
        attempts=[AttemptRecord(attempt=1, at=at, outcome="dead_letter", httpStatus=400)],
        firstEnqueuedAt=at - 1,
        deadLetteredAt=at,
    )


def seed(client: redis.Redis, keys: Keys, count: int) -> float:
    """Store `count` dead letters in pipelines of 1,000; returns the seconds it took."""
    started, now = time.perf_counter(), time.time()
    for start in range(0, count, 1000):
        with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(count, start + 1000)):
                queue_add_entry(pipe, keys, entry(n, now))
            pipe.execute()
    return time.perf_counter() - started


async def ask(url: str, key: str, requests: int) -> tuple[list[float], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    body: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(requests + 20):
            started = time.perf_counter()
            async with session.get(url) as response:
                body = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"overview answered {response.status}: {body}")
            if i >= 20:  # the first requests warm the connection and the scripts
                latencies.append((time.perf_counter() - started) * 1000)
    return latencies, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--entries", type=int, help="dead letters to store (default 100,000)")
    parser.add_argument("--requests", type=int, help="overview requests (default 1,000)")
    args = parser.parse_args()
    count = args.entries or (5_000 if args.quick else 100_000)
    requests = args.requests or (200 if args.quick else 1_000)
    settings = Settings()
    client = redis.Redis.from_url(settings.redis_url)
    server = Server(settings.redis_url)
    admin_key = server.key
    server.env["EVENTQ_ADMIN_API_KEYS"] = f"bench-admin:{admin_key}"
    keys = Keys(server.env["EVENTQ_KEY_PREFIX"])
    try:
        seed_s = seed(client, keys, count)
        server.start()
        url = server.base_url + "/v1/overview"
        latencies, body = asyncio.run(ask(url, admin_key, requests))
        started = time.perf_counter()
        scanned = sum(1 for _ in DeadLetterStore(client, keys).iter_matching())
        scan_s = time.perf_counter() - started
    finally:
        server.stop()
        server.purge(client)
    result = {
        "entries": count,
        "counted": body["deadLetters"]["total"],
        "groups_shown": len(body["deadLetters"]["groups"]),
        "requests": requests,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "target_p99_ms": TARGET_P99_MS,
        "seed_s": round(seed_s, 2),
        "full_scan_s": round(scan_s, 2),
        "full_scan_entries": scanned,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    out = QUICK_RESULTS if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["p99_ms"] <= TARGET_P99_MS and result["counted"] == count else 1


if __name__ == "__main__":
    raise SystemExit(main())
