"""`make test-live`'s two faces, run as a user would (a child pytest): without a token it says it
skipped and why and exits 0; with one it records HubSpot's answers (here the fake stands in for
HubSpot at EVENTQ_LIVE_HUBSPOT_BASE_URL), deletes what it made, and the recording replays with
`python -m fake_hubspot.contract` without difference."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.control import FakeHubSpot
from tests.contract.conftest import FAKE_DAILY, LIVE, ROOT

pytestmark = pytest.mark.skipif(LIVE, reason="runs the live mode itself, against the fake")
# the child pytest needs none of the heavy plugins (schemathesis alone costs seconds to import)
PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:schemathesis"]
PYTEST += ["-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:subtests"]


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTQ_")}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_without_a_token_the_live_suite_says_it_skipped_and_exits_0(tmp_path: Path) -> None:
    done = run(
        [*PYTEST, str(ROOT / "tests/contract")],
        {"EVENTQ_CONTRACT_TARGET": "live"},
        ROOT,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: set EVENTQ_LIVE_HUBSPOT_TOKEN" in done.stdout
    assert " passed" not in done.stdout


def test_a_live_run_records_cleans_up_and_its_recording_replays_without_difference(
    fake_process: str, tmp_path: Path
) -> None:
    control = FakeHubSpot(fake_process)
    control.reset()
    control.set_rate_limit(100, 10_000, daily=FAKE_DAILY)
    token = "live-" + secrets.token_hex(16)
    control.add_token(token, app="live-mode", scopes=[WRITE_SCOPE, READ_SCOPE])
    recording, pending = tmp_path / "hubspot.json", tmp_path / "pending.json"
    env = {
        "EVENTQ_CONTRACT_TARGET": "live",
        "EVENTQ_LIVE_HUBSPOT_TOKEN": token,
        "EVENTQ_LIVE_HUBSPOT_BASE_URL": fake_process,
        "EVENTQ_LIVE_RECORDING": str(recording),
        "EVENTQ_LIVE_PENDING": str(pending),
        "EVENTQ_CONTRACT_REPLAY_FAKE_URL": fake_process,  # no second fake to start
    }
    test_file = str(ROOT / "tests/contract/test_hubspot_contract.py")

    done = run([*PYTEST, test_file], env, ROOT)

    assert done.returncode == 0, done.stdout + done.stderr
    assert token not in done.stdout + done.stderr
    text = recording.read_text()
    assert token not in text
    assert '"step": "idempotent re-send"' in text
    assert not pending.exists()  # everything made was deleted
    # what the run made is gone (the replay's events belong to another identity of the fake)
    assert [e for e in control.events() if e.get("identity") == "app:live-mode"] == []

    replay_token = "replay-" + secrets.token_hex(8)  # a fresh identity: no events yet
    control.add_token(replay_token, scopes=[WRITE_SCOPE, READ_SCOPE])
    replay = ["-m", "fake_hubspot.contract", str(recording), "--fake-url", fake_process]
    replayed = run([*replay, "--token", replay_token], {}, ROOT)

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 difference(s)" in replayed.stderr
