"""Ingest benchmark of `eventq serve`: events/s through POST /v1/events/batch, and the latency of
POST /v1/events under an open-loop load of 200 requests/s from concurrent clients.

Starts its own `eventq serve` on a free port against Redis, under a unique key prefix and queue
(no worker: this measures ingest only), prints one JSON object and writes it to
bench/results/ingest.json, then deletes every key and queue it made.

    .venv/bin/python bench/ingest_bench.py            # full run (about half a minute)
    .venv/bin/python bench/ingest_bench.py --quick    # smoke run, into bench/results/quick/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: `python bench/ingest_bench.py`

from bench.harness import make_event as event  # noqa: E402
from fake_hubspot.control import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest.json"
QUICK_RESULTS = ROOT / "bench" / "results" / "quick" / "ingest.json"
TARGET_BATCH_EVENTS_PER_S = 2000
TARGET_SINGLE_P99_MS = 50.0


class Server:
    """`eventq serve` in a subprocess with its own prefix, queues and producer key."""

    def __init__(self, redis_url: str) -> None:
        tag = uuid.uuid4().hex[:10]
        self.key = "bench-" + secrets.token_hex(16)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "EVENTQ_REDIS_URL": redis_url,
            "EVENTQ_KEY_PREFIX": f"bench-{tag}",
            "EVENTQ_QUEUE": f"bench-q-{tag}",
            "EVENTQ_BULK_QUEUE": f"bench-qb-{tag}",
            "EVENTQ_API_KEYS": f"bench:{self.key}",
            "EVENTQ_HTTP_HOST": "127.0.0.1",
            "EVENTQ_HTTP_PORT": str(self.port),
        }
        self.log = Path(tempfile.gettempdir()) / f"ingest-bench-{tag}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eventq", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"eventq serve exited; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"eventq serve did not start; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def purge(self, client: redis.Redis) -> int:
        """Delete every key and queue this run made; returns how many messages were queued."""
        queued = int(client.llen(self.env["EVENTQ_QUEUE"]))
        for key in client.scan_iter(f"{self.env['EVENTQ_KEY_PREFIX']}:*", count=1000):
            client.delete(key)
        client.delete(self.env["EVENTQ_QUEUE"], self.env["EVENTQ_BULK_QUEUE"])
        return queued


async def batch_phase(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], clients: int
) -> dict[str, Any]:
    """Send pre-encoded batches from `clients` concurrent clients; returns the throughput."""
    pending = list(bodies)
    accepted = rejected = failures = 0

    async def client() -> None:
        nonlocal accepted, rejected, failures
        while pending:
            body = pending.pop()
            async with session.post(url, data=body) as response:
                if response.status != 202:
                    failures += 1
                    continue
                answer = await response.json()
                accepted += answer["accepted"]
                rejected += answer["rejected"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "batches": len(bodies),
        "clients": clients,
        "events": accepted + rejected,
        "accepted": accepted,
        "rejected": rejected,
        "failed_requests": failures,
        "seconds": round(elapsed, 3),
        "events_per_s": round(accepted / elapsed, 1),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


async def single_phase(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], rate: float
) -> dict[str, Any]:
    """Open loop: request i starts at t0 + i/rate whatever the others do; latency counts from
    the scheduled start, so a slow server cannot hide queueing (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0
    t0 = loop.time() + 0.2

    async def one(i: int, body: bytes) -> None:
        nonlocal failures
        at = t0 + i / rate
        await asyncio.sleep(max(0.0, at - loop.time()))
        async with session.post(url, data=body) as response:
            await response.read()
            if response.status != 202:
                failures += 1
        latencies.append((loop.time() - at) * 1000)

    await asyncio.gather(*(one(i, body) for i, body in enumerate(bodies)))
    elapsed = loop.time() - t0
    return {
        "rate_rps": rate,
        "requests": len(bodies),
        "achieved_rps": round(len(bodies) / elapsed, 1),
        "failed_requests": failures,
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        warm = [json.dumps({"events": [event(run + "w", n) for n in range(50)]}).encode()]
        await batch_phase(session, server.base_url + "/v1/events/batch", warm, 1)
        size = args.batch_size
        batches = [
            json.dumps({"events": [event(run, b * size + n) for n in range(size)]}).encode()
            for b in range(args.batches)
        ]
        batch = await batch_phase(
            session, server.base_url + "/v1/events/batch", batches, args.clients
        )
        batch["batch_size"] = size
        count = int(args.rate * args.duration)
        singles = [json.dumps(event(run + "s", n)).encode() for n in range(count)]
        single = await single_phase(session, server.base_url + "/v1/events", singles, args.rate)
        single["connections"] = args.connections
    return {"batch": batch, "single": single}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("EVENTQ_REDIS_URL", "redis://localhost:6379/0")
    )
    parser.add_argument("--batches", type=int, default=40, help="batches to send (default 40)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (500)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent batch clients (2)")
    parser.add_argument("--rate", type=float, default=200.0, help="single requests/s (200)")
    parser.add_argument("--duration", type=float, default=15.0, help="single phase seconds (15)")
    parser.add_argument("--connections", type=int, default=64, help="client connection pool (64)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--out", type=Path, help=f"where to write the JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:  # a smoke run never overwrites the committed figures
        args.batches, args.duration = 6, 3.0
    if args.out is None:
        args.out = QUICK_RESULTS if args.quick else RESULTS
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    client = redis.Redis.from_url(args.redis_url)
    server = Server(args.redis_url)
    server.start()
    try:
        figures = asyncio.run(measure(server, args))
    finally:
        server.stop()
        queued = server.purge(client)
    figures["queued_messages"] = queued
    figures["targets"] = {
        "batch_events_per_s": TARGET_BATCH_EVENTS_PER_S,
        "single_p99_ms": TARGET_SINGLE_P99_MS,
        "met": figures["batch"]["events_per_s"] >= TARGET_BATCH_EVENTS_PER_S
        and figures["single"]["p99_ms"] <= TARGET_SINGLE_P99_MS,
    }
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    figures["command"] = " ".join(
        ["bench/ingest_bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    text = json.dumps(figures, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    return 0 if figures["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
