"""`eventq run` brings up a whole sandbox stack by itself and Ctrl-C takes it all down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from fake_hubspot.control import FakeHubSpot, free_port
from tests.conftest import ROOT, wait_for


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_eventq_run_starts_redis_the_fake_a_worker_and_flower_then_stops_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    # Given no Redis at the configured URL and no HubSpot token (sandbox mode)
    redis_port, fake_port, flower_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTQ_")}
    env.update(
        {
            "EVENTQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "EVENTQ_METRICS_PORT": "0",
            "EVENTQ_SCHEDULER_INTERVAL_S": "0.1",
        }
    )
    log = (tmp_path / "run.log").open("wb")
    stack = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventq",
            "run",
            "--fake-port",
            str(fake_port),
            "--flower-port",
            str(flower_port),
            "--no-http",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        text = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "eventq is running" in text(), 60, "the stack to announce itself")
        assert "sandbox mode" in text()
        # When the sample events are enqueued
        enqueue = subprocess.run(
            [sys.executable, "-m", "eventq", "enqueue", str(ROOT / "examples" / "events.jsonl")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert enqueue.returncode == 0, enqueue.stderr
        # Then they reach the fake HubSpot
        fake = FakeHubSpot(f"http://127.0.0.1:{fake_port}")
        assert len(fake.wait_for_events(5, timeout_s=60)) == 5
        children = psutil.Process(stack.pid).children(recursive=True)
        assert len(children) >= 3
    finally:
        # When Ctrl-C is pressed (or a supervisor sends SIGTERM)
        stack.send_signal(stop_signal)
        try:
            stack.wait(40)
        finally:
            print(text())  # shown by pytest when the test fails
    # Then every process it started is gone
    assert stack.returncode == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
