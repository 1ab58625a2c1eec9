"""Profile one eventq worker process delivering N events: `python -m bench.profile_worker`.

One `celery worker` process (eventq's asyncio pool, default concurrency) drains N events queued
before it starts (packed by `enqueue_many`, or one message each with `--unpacked`) against the
fake HubSpot at 50 ms, no rate limit, while py-spy samples it (`pip install py-spy`; not a
dependency of eventq). Prints the rate, the worker's CPU per event and the functions of eventq,
redis-py, pydantic, kombu and celery with the largest share of the samples (inclusive).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

from bench.harness import FakeServer, Names, Workers, make_event, python, wait_until
from bench.scenarios import LATENCY_MS, eventq_env
from eventq.settings import settings_from_env
from producers.enqueue import Producer

_SHOWN = ("(worker/", "(eventq/", "pydantic/main", "(kombu/", "celery/app/trace", "logging/")


def inclusive_shares(raw: Path) -> tuple[int, Counter[str]]:
    """Return the number of samples in py-spy's raw (collapsed) output and each frame's count."""
    total, frames = 0, Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            frames[frame] += int(count)
    return total, frames


def profile(events: int, redis_url: str, *, packed: bool, out: Path) -> str:
    """Drain `events` through one worker process under py-spy; return the summary line."""
    spy_path = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy_path).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    names = Names()
    client = redis.Redis.from_url(redis_url)
    try:
        with FakeServer(latency_ms=LATENCY_MS) as fake:
            env = eventq_env(names, fake, redis_url, EVENTQ_RATE_LIMIT="100000/1s")
            producer = Producer(settings_from_env(env))
            bodies = [make_event(names.tag, i) for i in range(events)]
            if packed:
                producer.enqueue_many(bodies)
            else:
                for body in bodies:
                    producer.enqueue(body)
            names.hide(client)
            queues = f"{names.queue},{names.bulk_queue}"
            command = [python(), "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queues]
            command += ["--without-mingle", "--without-gossip", "--loglevel", "WARNING"]
            with Workers(command, env, 1) as workers:
                workers.wait_ready()
                spy_args = ["record", "-p", str(workers.procs[0].pid), "-r", "200", "-f", "raw"]
                spy = subprocess.Popen(
                    [spy_path, *spy_args, "-o", str(out), "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1)  # py-spy attached
                started, cpu_before = time.monotonic(), workers.cpu_s()
                names.release(client)
                wait_until(
                    lambda: int(fake.control.stats()["events"]) >= events,
                    events / 10 + 60,
                    f"{events} deliveries",
                    every_s=0.1,
                )
                took_s, cpu_s = time.monotonic() - started, workers.cpu_s() - cpu_before
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
    finally:
        names.cleanup(client)
    how = "packed" if packed else "unpacked"
    return (
        f"{events} events ({how}) in {took_s:.1f} s: {events / took_s:.0f} events/s, "
        f"worker CPU {cpu_s * 1000 / events:.3f} ms/event"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the profile and print its summary and top frames."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker", description=__doc__)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--unpacked", action="store_true", help="one message per event")
    parser.add_argument("--redis-url", default="redis://localhost:6379/13")
    parser.add_argument("--top", type=int, default=40, help="frames to print")
    parser.add_argument("--out", type=Path, help="keep py-spy's raw output here")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="eventq-profile-")) / "worker.txt"
    print(profile(args.events, args.redis_url, packed=not args.unpacked, out=out))
    total, frames = inclusive_shares(out)
    shown = [(f, n) for f, n in frames.most_common() if any(s in f for s in _SHOWN)]
    for frame, count in shown[: args.top]:
        print(f"{100 * count / total:5.1f}%  {frame}")
    print(f"({total} samples; raw stacks in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
