"""`eventq run` is a sandbox whose banner tells the truth: its printed commands, pasted as they
are, enqueue, look up, post, fail and replay events; a second run delivers the examples again;
a busy port stops it in one line; Ctrl-C (or SIGTERM) takes every process down."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
from playwright.sync_api import expect, sync_playwright

from eventq.settings import Settings
from eventq_cli.sandbox import clear_prefix
from eventq_cli.stack import _ensure_redis, _Run, _stop
from fake_hubspot.control import FakeHubSpot, free_port
from tests.conftest import wait_for

CHROMIUM = Path("/usr/bin/chromium")
JOB_ID = re.compile(r"\b[0-9a-f]{32}\b")


@dataclass
class Run:
    """One `eventq run` in the background, its output in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def banner(self) -> str:
        wait_for(lambda: "eventq is running" in self.text(), 60, "the stack to announce itself")
        return self.text().split("eventq is running", 1)[1]

    def commands(self) -> list[str]:
        """The commands the banner prints under `Try it`, in order (comments left out)."""
        block = self.banner().split("Try it", 1)[1].splitlines()[1:]
        found = []
        for line in block:
            if not line.startswith("  "):
                break
            if not line.strip().startswith("#"):
                found.append(line.strip())
        return found

    def command(self, *words: str) -> str:
        """The one printed command containing every word."""
        matching = [c for c in self.commands() if all(w in c for w in words)]
        assert len(matching) == 1, (words, self.commands())
        return matching[0]

    def stop(self, sig: signal.Signals) -> None:
        if sig == signal.SIGINT:  # as a terminal's Ctrl-C: to the whole foreground group
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(40)
        finally:
            print(self.text())  # shown by pytest when the test fails


def start_run(env: dict[str, str], cwd: Path, *args: str) -> Run:
    log = cwd / f"run-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eventq", "run", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    return Run(proc, log)


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a user pastes it into a shell with no EVENTQ_* variables."""
    return subprocess.run(
        command,
        shell=True,  # the banner's commands are shell lines
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def user_env() -> dict[str, str]:
    """A user's shell: no EVENTQ_* settings (the printed commands must bring their own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("EVENTQ_", "FLOWER_"))}


@pytest.fixture
def run_env(
    user_env: dict[str, str], real_redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> Iterator[dict[str, str]]:
    """`eventq run`'s settings: the shared Redis under this test's prefix, free ports."""
    env = dict(user_env)
    env.update(
        {
            "EVENTQ_REDIS_URL": real_redis_url,
            "EVENTQ_KEY_PREFIX": key_prefix,
            "EVENTQ_HTTP_PORT": str(free_port()),
            "EVENTQ_METRICS_PORT": "0",
            "EVENTQ_WORKER_PROCESSES": "1",
            "EVENTQ_SCHEDULER_INTERVAL_S": "0.1",
        }
    )
    yield env
    clear_prefix(redis_client, f"{key_prefix}-sandbox")


def admin_login_works_in_chromium(admin_url: str, admin_key: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(admin_url)
            expect(page).to_have_url(admin_url + "login")
            page.fill("#key", admin_key)
            page.click("#login")
            expect(page).to_have_url(admin_url)
            expect(page.locator("#key-name")).to_have_text("admin")
        finally:
            browser.close()


@pytest.mark.timeout(240)
def test_the_banner_commands_work_as_printed_and_a_second_run_delivers_the_examples_again(
    tmp_path: Path,
    user_env: dict[str, str],
    run_env: dict[str, str],
    key_prefix: str,
    redis_client: redis.Redis,
) -> None:
    # Given a Redis holding other data beside where the sandbox will live, and no HubSpot token
    redis_client.set(f"{key_prefix}:canary", "not the sandbox's")
    sandbox = f"{key_prefix}-sandbox"
    fake_port, flower_port = free_port(), free_port()
    ports = ("--fake-port", str(fake_port), "--flower-port", str(flower_port))
    # When `eventq run` starts (in a fresh directory, as a new user's checkout)
    first = start_run(run_env, tmp_path, *ports)
    try:
        banner = first.banner()
        # Then the banner says where events go, which Redis, which prefix, where the logins are
        assert f"the fake HubSpot at http://127.0.0.1:{fake_port}" in banner
        assert f"{run_env['EVENTQ_REDIS_URL']}, already running" in banner
        assert f"key prefix {key_prefix}-sandbox, cleared at start" in banner
        env_file = tmp_path / ".eventq" / "sandbox.env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        logins = env_file.read_text()
        fake = FakeHubSpot(f"http://127.0.0.1:{fake_port}")

        # When the printed enqueue command runs as printed, in a shell with no EVENTQ_* settings
        enqueue = shell(first.command("enqueue", "events.jsonl"), tmp_path, user_env)
        assert enqueue.returncode == 0, enqueue.stderr
        assert len(fake.wait_for_events(5, timeout_s=30)) == 5
        # Then it printed the job ids, and `status` of one says delivered
        job_ids = JOB_ID.findall(enqueue.stdout)
        assert len(job_ids) == 5
        job_key = f"{sandbox}:job:{job_ids[0]}"
        wait_for(lambda: redis_client.hget(job_key, "state") == b"delivered", 30, "delivered")
        status = shell(
            first.command("status", "<job id>").replace("<job id>", job_ids[0]), tmp_path, user_env
        )
        assert "delivered" in status.stdout, status.stdout + status.stderr

        # When the printed curl posts one event to the HTTP service
        posted = shell(
            first.command("curl", "/v1/events") + " -w '\n%{http_code}'", tmp_path, user_env
        )
        # Then it is accepted (202) with its job id, with the printed producer key
        body, code = posted.stdout.rsplit("\n", 1)
        assert code == "202", posted.stdout + posted.stderr
        assert JOB_ID.fullmatch(json.loads(body)["jobId"])

        # When the printed dead-letter pair runs: the fake refuses the next delivery, one event
        assert shell(first.command("fail-next"), tmp_path, user_env).returncode == 0
        failing = shell(first.command("enqueue", "webinar-7.json"), tmp_path, user_env)
        assert failing.returncode == 0, failing.stderr
        # Then it is dead-lettered and listed, and the printed replay delivers it
        wait_for(lambda: redis_client.zcard(f"{sandbox}:dlq"), 30, "a dead letter")
        listed = shell(first.command("dlq list"), tmp_path, user_env)
        assert "rejected" in listed.stdout, listed.stdout + listed.stderr
        replay = shell(first.command("dlq replay"), tmp_path, user_env)
        assert replay.returncode == 0, replay.stderr
        assert "1 replayed" in replay.stderr
        wait_for(
            lambda: "webinar-7" in {e["externalEventId"] for e in fake.events()},
            30,
            "the replayed event at the fake",
        )

        # When the printed Flower call runs: its API answers with the printed login
        workers = shell(first.command("curl", "/api/workers"), tmp_path, user_env)
        assert any(name.startswith("eventq1@") for name in json.loads(workers.stdout))
        # and its UI asks for the same login
        anonymous = shell(
            f"curl -sS -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{flower_port}/",
            tmp_path,
            user_env,
        )
        assert anonymous.stdout == "401"

        # When the printed admin key is used on the printed admin page, in Chromium
        admin = re.search(r"admin page\s+(\S+)\s+admin key (\S+)", banner)
        assert admin is not None
        if CHROMIUM.exists():
            admin_login_works_in_chromium(admin.group(1), admin.group(2))
        children = psutil.Process(first.proc.pid).children(recursive=True)
        assert len(children) >= 4  # fake, worker, Flower, HTTP service
    finally:
        # When Ctrl-C is pressed
        first.stop(signal.SIGINT)
    # Then every process it started is gone, quietly: no traceback, no warning from Flower
    # about workers that did not answer (it starts once they do)
    assert first.proc.returncode == 0
    assert "Traceback" not in first.text()
    assert "Inspect method" not in first.text()
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE

    # When `eventq run` starts a second time, on the same Redis (stopped by a supervisor's
    # SIGTERM this time)
    second = start_run(run_env, tmp_path, *ports)
    try:
        assert "key prefix" in second.banner()
        enqueue = shell(second.command("enqueue", "events.jsonl"), tmp_path, user_env)
        assert enqueue.returncode == 0, enqueue.stderr
        # Then the examples are delivered again (the sandbox started from a clean prefix)
        fake = FakeHubSpot(f"http://127.0.0.1:{fake_port}")
        assert len(fake.wait_for_events(5, timeout_s=30)) == 5
    finally:
        second.stop(signal.SIGTERM)
    assert second.proc.returncode == 0
    # and the logins were generated once, and nothing outside the sandbox prefix was deleted
    assert env_file.read_text() == logins
    assert redis_client.get(f"{key_prefix}:canary") == b"not the sandbox's"
    if not CHROMIUM.exists():
        pytest.skip("all but the admin login passed; it needs Chromium (make tools)")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("busy", ["--fake-port", "--flower-port", "EVENTQ_HTTP_PORT"])
def test_a_busy_port_stops_eventq_run_within_10_s_in_one_line_naming_what_moves_it(
    tmp_path: Path, user_env: dict[str, str], busy: str
) -> None:
    # Given something listening on the port one server of the stack wants
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ports = {
        "--fake-port": free_port(),
        "--flower-port": free_port(),
        "EVENTQ_HTTP_PORT": free_port(),
    }
    ports[busy] = port
    env = dict(user_env, EVENTQ_HTTP_PORT=str(ports["EVENTQ_HTTP_PORT"]))
    args = ["--fake-port", str(ports["--fake-port"]), "--flower-port", str(ports["--flower-port"])]
    # When `eventq run` starts
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "eventq", "run", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    finally:
        taken.close()
    # Then it exits non-zero within 10 s with one line naming the port and what moves it
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(port) in lines[0]
    assert busy in lines[0]
    assert "running" not in lines[0]
    assert not (tmp_path / ".eventq").exists()  # and nothing was set up


def test_with_no_redis_at_the_url_eventq_run_starts_one_and_says_it_does_not_persist(
    tmp_path: Path,
) -> None:
    # Given no Redis at the configured URL
    url = f"redis://127.0.0.1:{free_port()}/0"
    run = _Run(Settings(redis_url=url), 0, 0, False, False, threading.Event(), tmp_path)
    try:
        # When eventq run looks for Redis
        said = _ensure_redis(run)
        # Then it started one on that port, stopped with the stack, and the banner says so
        assert (
            said
            == f"{url}, started by eventq run; does not persist (its files are deleted at exit)"
        )
        assert [name for name, _ in run.procs] == ["redis"]
        assert redis.Redis.from_url(url).ping()
    finally:
        _stop(run.procs)


def test_when_the_sandbox_file_cannot_be_written_eventq_run_says_so_in_one_line(
    tmp_path: Path, user_env: dict[str, str]
) -> None:
    # Given a directory where `.eventq` is a file, so .eventq/sandbox.env cannot be written
    (tmp_path / ".eventq").write_text("in the way")
    ports = ["--fake-port", str(free_port()), "--flower-port", str(free_port())]
    env = dict(user_env, EVENTQ_HTTP_PORT=str(free_port()))
    # When `eventq run` starts there
    result = subprocess.run(
        [sys.executable, "-m", "eventq", "run", *ports],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    # Then it stops before starting anything, in one line naming the file
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "cannot write" in lines[0]
    assert ".eventq/sandbox.env" in lines[0]
