"""Processes and measurements for the benchmark: the fake, Celery workers, Redis namespaces.

Every run gets its own key prefix and queue names in the shared Redis (never flushed) and
deletes them afterwards. Work is pre-queued on the workers' own queue, moved aside (`RENAME`)
while they start, and handed back in one `RENAME` once they are all ready, so a run measures
draining, not enqueueing or start-up; messages keep their routing, so Celery retries land on the
queue the workers consume.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from fake_hubspot.control import FakeHubSpot, start_fake_subprocess, stop_fake_subprocess

__all__ = [
    "CELERY_FLAGS",
    "ROOT",
    "FakeServer",
    "Names",
    "RssSampler",
    "Workers",
    "cpu_s",
    "eventq_worker_command",
    "make_event",
    "redis_server_process",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-" + uuid.uuid4().hex
# every benchmark worker: no start-up sync with other nodes, no heartbeats between them
CELERY_FLAGS = ("--without-mingle", "--without-gossip")


def make_event(tag: str, n: int) -> dict[str, Any]:
    """Return a valid HubSpot create body, unique per (`tag`, `n`)."""
    return {
        "externalAccountId": "bench-acct",
        "externalEventId": f"{tag}-{n}",
        "eventName": f"Benchmark webinar {n}",
        "eventOrganizer": "Acme",
        "eventType": "WEBINAR",
        "startDateTime": "2027-03-01T10:00:00+01:00",
        "endDateTime": "2027-03-01T11:00:00+01:00",
        "customProperties": [{"name": "campaign", "value": f"bench-{n % 7}"}],
    }


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; returns it or raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def cpu_s(process: psutil.Process) -> float:
    """Return the user + system CPU seconds `process` has used (0 once it is gone)."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def redis_server_process(port: int = 6379) -> psutil.Process | None:
    """Return the local redis-server listening on `port`, if it can be found."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if "redis-server" in (proc.info.get("name") or "") and f":{port}" in cmdline:
            return proc
    return None


@dataclass(frozen=True)
class Names:
    """One run's key prefix and queue names in the shared Redis."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def prefix(self) -> str:
        """Return the EVENTQ_KEY_PREFIX of this run."""
        return f"bench-{self.tag}"

    @property
    def queue(self) -> str:
        """Return the live queue the workers consume."""
        return f"bench-q-{self.tag}"

    @property
    def bulk_queue(self) -> str:
        """Return the bulk queue the workers consume."""
        return f"bench-qb-{self.tag}"

    @property
    def staging(self) -> str:
        """Return the key the pre-queued messages wait under while the workers start."""
        return f"bench-stage-{self.tag}"

    def hide(self, client: redis.Redis, queue: str | None = None) -> None:
        """Move the messages pre-queued on `queue` (default: the live queue) out of the workers'
        sight (they keep their routing)."""
        client.rename(queue or self.queue, self.staging)

    def release(self, client: redis.Redis, queue: str | None = None) -> float:
        """Hand every pre-queued message back to `queue` (default: the live queue) at once;
        return the time (epoch s)."""
        client.rename(self.staging, queue or self.queue)
        return time.time()

    def cleanup(self, client: redis.Redis) -> None:
        """Delete every key of this run: eventq's keys, the queues and their kombu bindings."""
        batch: list[bytes] = []
        for key in client.scan_iter(f"{self.prefix}:*", count=2000):
            batch.append(key)
            if len(batch) >= 2000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        for queue in (self.queue, self.bulk_queue, self.staging):
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            for priority in (3, 6, 9):
                client.delete(f"{queue}\x06\x16{priority}")


class FakeServer:
    """The fake HubSpot in its own process, with its control client and CPU meter."""

    def __init__(self, *, latency_ms: float, rate_limit: str = "off") -> None:
        args = ["--token", TOKEN, "--rate-limit", rate_limit, "--latency-ms", str(latency_ms)]
        self._proc, self.base_url = start_fake_subprocess(args=args)
        self.control = FakeHubSpot(self.base_url, timeout_s=30)
        self.process = psutil.Process(self._proc.pid)
        self.token = TOKEN

    def stop(self) -> None:
        """Stop the fake."""
        stop_fake_subprocess(self._proc)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class Workers:
    """A set of `celery worker` processes started with one command and environment."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], count: int, ready_marks: int = 0
    ) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="eventq-bench-")
        folder = Path(self._folder.name)
        self.logs = [folder / f"worker-{i}.log" for i in range(count)]
        full_env = {**os.environ, **env, "BENCH_READY_DIR": str(folder)}
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        for index, log in enumerate(self.logs):
            name = f"bench{index}-{uuid.uuid4().hex[:6]}@%h"
            argv = [*command, "-n", name, "-I", "bench.ready_probe"]
            with log.open("wb") as out:
                self.procs.append(
                    subprocess.Popen(argv, env=full_env, cwd=ROOT, stdout=out, stderr=out)
                )
        self._ready_dir = folder
        # `eventq worker --processes N` is one command whose N children each say ready
        self._ready_marks = ready_marks or count

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until every worker has signalled `worker_ready`; raise RuntimeError if one died."""

        def ready() -> bool:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker exited with {proc.returncode}:\n{tail}")
            marks = {p.name for p in self._ready_dir.iterdir() if p.name.isdigit()}
            return len(marks) >= self._ready_marks

        wait_until(ready, timeout_s, "workers to be ready")

    def processes(self) -> list[psutil.Process]:
        """Return every worker process, pool children included."""
        found: list[psutil.Process] = []
        for proc in self.procs:
            try:
                parent = psutil.Process(proc.pid)
                found += [parent, *parent.children(recursive=True)]
            except psutil.Error:
                continue
        return found

    def cpu_s(self) -> float:
        """Return the CPU seconds used so far by every worker process together."""
        return sum(cpu_s(p) for p in self.processes())

    def stop(self, timeout_s: float = 60) -> None:
        """Warm-shut every worker (SIGTERM), killing any that does not exit in time."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._folder.cleanup()

    def log_text(self) -> str:
        """Return every worker's log, for error reports."""
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class RssSampler:
    """Samples the RSS of a set of processes in a thread; keeps each one's peak and a series."""

    def __init__(self, processes: Callable[[], list[psutil.Process]], every_s: float = 0.1):
        self._processes = processes
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_by_pid: dict[int, int] = {}
        self.series: list[tuple[float, int]] = []  # (time, largest single-process RSS)

    def _run(self) -> None:
        while not self._stop.is_set():
            largest = 0
            for proc in self._processes():
                try:
                    rss = int(proc.memory_info().rss)
                except psutil.Error:
                    continue
                self.peak_by_pid[proc.pid] = max(self.peak_by_pid.get(proc.pid, 0), rss)
                largest = max(largest, rss)
            self.series.append((time.time(), largest))
            self._stop.wait(self._every_s)

    @property
    def peak_mb(self) -> float:
        """Return the largest RSS any one process reached, in MB."""
        return max(self.peak_by_pid.values(), default=0) / 1e6

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def python() -> str:
    """Return the interpreter running the benchmark (the project's venv)."""
    return sys.executable


def eventq_worker_command() -> list[str]:
    """Return `eventq worker` as a user runs it (default processes, one per CPU)."""
    return [python(), "-m", "eventq", "worker", *CELERY_FLAGS]
