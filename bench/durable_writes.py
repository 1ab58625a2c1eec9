"""Enqueue latency with EVENTQ_REDIS_DURABLE_WRITES off and on: the price of `WAIT 1`.

Starts its own primary and one replica (`redis-server` on free loopback ports, tmp dirs, no
persistence: this measures replication, not disk), then enqueues the same number of events one
at a time through `Producer.enqueue` (record, publish, mark published, and with durable writes
`SET` + `WAIT 1 <timeout>` on top), durable writes off then on, in alternating rounds so a
neighbour's burst hits both. Prints one JSON object and writes it to
bench/results/durable_writes.json.

    .venv/bin/python -m bench.durable_writes            # 3 rounds of 500 enqueues each way
    .venv/bin/python -m bench.durable_writes --quick    # 1 round of 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from eventq.settings import load_settings
from fake_hubspot.control import free_port
from producers.enqueue import Producer

RESULTS = Path(__file__).resolve().parent / "results" / "durable_writes.json"


def _start(workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    workdir.mkdir(parents=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    argv += ["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"redis-server did not start on port {port}")


def _wait_linked(port: int) -> None:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while client.info("replication").get("connected_slaves", 0) < 1:
        if time.monotonic() > deadline:
            raise SystemExit("the replica did not link within 10 s")
        time.sleep(0.05)


def percentile(values: list[float], p: float) -> float:
    """Return the p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def _round(port: int, count: int, durable: bool) -> list[float]:
    """Enqueue `count` fresh events one at a time; return each enqueue's latency in ms."""
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        key_prefix=f"bench-dw-{tag}",
        queue=f"bench-dw-{tag}",
        redis_durable_writes=durable,
    )
    producer = Producer(settings)
    producer.enqueue(_event(tag, -1))  # connections and queue declaration out of the figures
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        producer.enqueue(_event(tag, i))
        latencies.append((time.perf_counter() - started) * 1000)
    producer.app.close()
    return latencies


def _event(tag: str, i: int) -> dict[str, Any]:
    return {
        "externalAccountId": "bench",
        "externalEventId": f"dw-{tag}-{i}",
        "eventName": f"Durable writes bench {i}",
        "eventOrganizer": "bench",
        "startDateTime": "2027-03-01T10:00:00Z",
    }


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "enqueues": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(sum(latencies) / len(latencies), 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 100 each way")
    args = parser.parse_args(argv)
    rounds, count = (1, 100) if args.quick else (3, 500)
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="eventq-bench-dw-"))
    primary, port = _start(workdir / "primary")
    replica, _ = _start(workdir / "replica", "--replicaof", "127.0.0.1", str(port))
    try:
        _wait_linked(port)
        off: list[float] = []
        on: list[float] = []
        for _ in range(rounds):
            off += _round(port, count, durable=False)
            on += _round(port, count, durable=True)
    finally:
        for proc in (replica, primary):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    figures = {
        "what": "Producer.enqueue latency, one at a time, primary + 1 replica on loopback",
        "machine": f"{platform.machine()} {platform.system()}, python {platform.python_version()}",
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "durable_writes_off": _summary(off),
        "durable_writes_on": _summary(on),
    }
    print(json.dumps(figures, indent=2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
