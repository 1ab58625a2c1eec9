"""`eventq worker --processes N`: N `celery worker` processes under one command, kept running.

Why N whole `celery worker` processes and not Celery's prefork pool: a prefork child runs one
task at a time, so the asyncio pool's many deliveries in flight per process would be lost, and
the prefork parent alone receives, decodes and acks every message, on one core: Celery's
per-message cost, which is what bounds eventq's throughput without a rate limit, would stay on
one core. N workers, each consuming from Redis with its own asyncio pool (`worker.pool`), spread
that cost over N cores; the limiter and the breaker live in Redis, so they are shared anyway.
This is `celery multi`'s layout (distinct node names `eventq1@host`, `eventq2@host`, …), run in
the foreground and supervised: a child that dies is started again, and SIGTERM drains all.

Signals: SIGTERM or SIGINT asks every child for Celery's warm shutdown (finish the deliveries
in flight, leave the rest queued); a second one asks for a cold shutdown (SIGQUIT). Children run
in their own process group, so a terminal's Ctrl-C reaches them through this process only, and
they get SIGTERM if this process dies (Linux's parent-death signal). A child killed outright
leaves its unacked messages to the broker (redelivered after `EVENTQ_VISIBILITY_TIMEOUT_S`,
their jobs' recorded state decides what is sent), and is started again.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from eventq.messaging import worker_argv
from eventq.settings import Settings

__all__ = [
    "available_cpus",
    "child_argv",
    "child_env",
    "cpu_quota",
    "die_with_parent",
    "restart_delay_s",
    "run_workers",
    "worker_processes",
]

log = logging.getLogger("eventq.supervisor")

HOSTNAME_FLAGS = ("-n", "--hostname")
QUICK_EXIT_S = 10.0  # a child that dies sooner than this after its start failed to start
MAX_QUICK_EXITS = 5  # then the supervisor gives up instead of restarting in a loop
_PR_SET_PDEATHSIG = 1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode


def cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Return the CPUs a cgroup CPU quota allows (v2 `cpu.max`, v1 `cfs_quota`), None if none."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup_root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not period.isdigit() or int(period) == 0:
        return None
    try:
        return int(quota) / int(period)
    except ValueError:
        return None


def available_cpus(affinity: int, quota: float | None) -> int:
    """Return the CPUs this process may use: its affinity, lowered by a CPU quota (at least 1)."""
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))


def worker_processes(settings: Settings, requested: int | None = None) -> int:
    """Return how many delivery processes to run: `--processes`, the setting, else the CPUs."""
    if requested is not None:
        return requested
    if settings.worker_processes is not None:
        return settings.worker_processes
    return available_cpus(len(os.sched_getaffinity(0)), cpu_quota())


def _split_hostname(celery_args: Sequence[str]) -> tuple[str, list[str]]:
    """Return the `--hostname` given to `celery worker` (default `eventq@%h`) and the rest."""
    name, rest, args = "eventq@%h", [], list(celery_args)
    while args:
        arg = args.pop(0)
        if arg in HOSTNAME_FLAGS and args:
            name = args.pop(0)
        elif arg.startswith("--hostname="):
            name = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return name, rest


def child_argv(settings: Settings, index: int, celery_args: Sequence[str]) -> list[str]:
    """Return child `index`'s (1-based) command line after `python -m`: `name<index>@host`."""
    hostname, rest = _split_hostname(celery_args)
    node, _, host = hostname.partition("@")
    numbered = f"{node}{index}@{host}" if host else f"{node}{index}"
    return worker_argv(settings, "--hostname", numbered, *rest)


def child_env(base: dict[str, str], metrics_dir: str | None = None) -> dict[str, str]:
    """Return a child's environment; with `metrics_dir`, its metrics go into files there (for
    the supervisor to serve, added up) and it serves none itself."""
    env = dict(base)
    if metrics_dir is not None:
        env[MULTIPROC_ENV] = metrics_dir
        env["EVENTQ_METRICS_PORT"] = "0"
    return env


def restart_delay_s(quick_exits: int) -> float | None:
    """Return how long to wait before starting a dead child again; None means give up.

    A child that ran a while restarts at once; one that keeps dying at start-up (`quick_exits`
    in a row) waits 1, 2, 4, 8 s, and after `MAX_QUICK_EXITS` the command stops with an error
    rather than restart a broken configuration forever.
    """
    if quick_exits >= MAX_QUICK_EXITS:
        return None
    return 0.0 if quick_exits == 0 else float(2 ** (quick_exits - 1))


@dataclass
class _Child:
    """One `celery worker` process and when to start it again after it died."""

    index: int
    proc: subprocess.Popen[bytes]
    started_at: float
    quick_exits: int = 0
    restart_at: float | None = None


@dataclass
class _Stop:
    """The stop requests (SIGTERM/SIGINT) received so far."""

    requested: threading.Event = field(default_factory=threading.Event)
    count: int = 0


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the supervisor dies (Linux; else nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


class _Supervisor:
    """Starts the children, restarts the ones that die, drains them all on SIGTERM."""

    def __init__(
        self,
        settings: Settings,
        processes: int,
        celery_args: Sequence[str],
        metrics_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.celery_args = list(celery_args)
        self.metrics_dir = metrics_dir
        self.children: list[_Child] = []

    def start(self, index: int) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", *child_argv(self.settings, index, self.celery_args)]
        return subprocess.Popen(
            argv,
            env=child_env(dict(os.environ), self.metrics_dir),
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads run before the children start
        )

    def start_all(self) -> None:
        now = time.monotonic()
        for index in range(1, self.processes + 1):
            self.children.append(_Child(index, self.start(index), now))
        pids = ", ".join(str(child.proc.pid) for child in self.children)
        log.info(
            "eventq worker: %d delivery processes (pids %s), up to %d deliveries in flight "
            "each, queues %s,%s",
            self.processes,
            pids,
            self.settings.concurrency,
            self.settings.queue,
            self.settings.bulk_queue,
        )

    def watch(self, stop: _Stop) -> int:
        """Keep the children running until a stop request (0) or a child that cannot start (1)."""
        while not stop.requested.wait(0.2):
            for child in self.children:
                if not self._keep(child):
                    return 1
        return 0

    def _keep(self, child: _Child) -> bool:
        """Notice a dead child and start it again when due; False to give up."""
        now = time.monotonic()
        if child.restart_at is None:
            code = child.proc.poll()
            if code is None:
                return True
            quick = now - child.started_at < QUICK_EXIT_S
            child.quick_exits = child.quick_exits + 1 if quick else 0
            delay = restart_delay_s(child.quick_exits)
            if delay is None:
                log.error(
                    "worker process %d exited with %s %d times right after starting; stopping",
                    child.index,
                    code,
                    child.quick_exits,
                )
                return False
            log.warning(
                "worker process %d (pid %d) exited with %s; starting it again in %.0f s",
                child.index,
                child.proc.pid,
                code,
                delay,
            )
            child.restart_at = now + delay
        if now >= child.restart_at:
            child.proc, child.started_at, child.restart_at = self.start(child.index), now, None
            log.info("worker process %d started again: pid %d", child.index, child.proc.pid)
        return True

    def drain(self, stop: _Stop) -> int:
        """Warm-shut every child down (cold on a second request); 0 when all exit cleanly."""
        signalled = 0
        while any(child.proc.poll() is None for child in self.children):
            if stop.count > signalled:
                sig = signal.SIGTERM if signalled == 0 else signal.SIGQUIT
                signalled = stop.count
                for child in self.children:
                    if child.proc.poll() is None:
                        child.proc.send_signal(sig)
            time.sleep(0.1)
        codes = [child.proc.returncode for child in self.children if child.restart_at is None]
        log.info("eventq worker: all %d delivery processes stopped", self.processes)
        return 0 if all(code == 0 for code in codes) else 1


@contextmanager
def _stop_requests() -> Iterator[_Stop]:
    """Count SIGTERM/SIGINT instead of raising at a random point; restore the handlers after."""
    stop = _Stop()

    def request(*_: object) -> None:
        stop.count += 1
        stop.requested.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, request)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_workers(settings: Settings, processes: int, celery_args: Sequence[str]) -> int:
    """Run `processes` supervised `celery worker` processes until SIGTERM; return the exit code."""
    with _process_metrics(settings) as metrics_dir:
        supervisor = _Supervisor(settings, processes, celery_args, metrics_dir)
        with _stop_requests() as stop:
            supervisor.start_all()
            code = supervisor.watch(stop)
            if code != 0:
                stop.count += 1
            drained = supervisor.drain(stop)
    return code or drained


@contextmanager
def _process_metrics(settings: Settings) -> Iterator[str | None]:
    """Serve every child's metrics, added up, on `EVENTQ_METRICS_PORT`; yield the directory the
    children write them to (None when metrics are off). A dead child's counts stay in the sum."""
    if not settings.metrics_port:
        yield None
        return
    import redis

    from eventq.keys import Keys
    from worker.circuit_breaker import breaker_state_key
    from worker.metrics import serve_process_metrics

    metrics_dir = tempfile.mkdtemp(prefix="eventq-metrics-")
    try:
        serve_process_metrics(
            settings.metrics_port,
            metrics_dir,
            redis.Redis.from_url(settings.redis_url, socket_timeout=5),
            Keys(settings.key_prefix),
            breaker_state_key(Keys(settings.key_prefix), settings.hubspot_base_url),
        )
        yield metrics_dir
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
