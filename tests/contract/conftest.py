"""The contract suite's target: the fake HubSpot (`make test`) or the real one (`make test-live`).

`EVENTQ_CONTRACT_TARGET=live` (what `make test-live` sets) runs the suite against HubSpot with
the private-app token in `EVENTQ_LIVE_HUBSPOT_TOKEN` (a developer test account's, with
crm.objects.marketing_events.write, and .read for the read-back); without a token the module is
skipped, saying so. Anything else runs it against the fake, the same test functions.

Every event the suite creates has an `externalEventId` starting `eventq-contract-<run id>-`, is
written to a pending file before it is created (live runs), and is deleted when the module ends,
also after Ctrl-C or SIGTERM; a run that was killed outright is cleaned up by the next one.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import pytest

from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.contract import Answer, Recorder
from fake_hubspot.control import FakeHubSpot

LIVE = os.environ.get("EVENTQ_CONTRACT_TARGET") == "live"
TOKEN_VAR = "EVENTQ_LIVE_HUBSPOT_TOKEN"
SKIP_LIVE = (
    f"skipped: set {TOKEN_VAR} (a private-app token of a HubSpot developer test account with "
    f"{WRITE_SCOPE}, and {READ_SCOPE} for the read-back) to run the contract suite against "
    "HubSpot"
)
EVENTS_PATH = "/marketing/v3/marketing-events/events"
ACCOUNT = "eventq-contract"
ROOT = Path(__file__).resolve().parents[2]
# HubSpot's answers to a private app carry its daily budget's headers; the fake sends them when
# it has a daily budget, so every fake standing in for HubSpot here gets one (never reached)
FAKE_DAILY = 1_000_000


@dataclass
class Target:
    """Where the suite sends its requests, what it recorded and what it made."""

    name: str  # "hubspot" or "fake"
    recorder: Recorder
    run_id: str
    pending: Path | None  # live runs: ids created and not yet deleted, across runs
    made: list[str] = field(default_factory=list)

    def event(self, step: str, **changes: Any) -> dict[str, Any]:
        """Return a valid create body whose externalEventId carries the run's prefix."""
        return {
            "externalAccountId": ACCOUNT,
            "externalEventId": f"eventq-contract-{self.run_id}-{step}",
            "eventName": f"eventq contract test {self.run_id} {step}",
            "eventOrganizer": "eventq contract test",
            "eventType": "WEBINAR",
            "startDateTime": "2030-03-01T10:00:00Z",
            "endDateTime": "2030-03-01T11:00:00Z",
            "customProperties": [],
            **changes,
        }

    def call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """Send one recorded request; a create (POST/PUT of an event) is remembered first."""
        if method in ("POST", "PUT") and isinstance(body, dict) and "externalEventId" in body:
            self._remember(str(body["externalEventId"]))
        return asyncio.run(self._send(step, method, path, query, body))

    async def _send(
        self, step: str, method: str, path: str, query: dict[str, str] | None, body: Any
    ) -> Answer:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            return await self.recorder.send(session, step, method, path, query=query, body=body)

    def _remember(self, external_id: str) -> None:
        if external_id not in self.made:
            self.made.append(external_id)
        _write_pending(self.pending, self.made + _read_pending(self.pending))

    def forget(self, external_id: str) -> None:
        """Mark an event deleted (it is no longer cleaned up)."""
        self.made = [m for m in self.made if m != external_id]
        _write_pending(self.pending, [p for p in _read_pending(self.pending) if p != external_id])

    def clean_up(self, extra: Sequence[str] = ()) -> list[str]:
        """Delete every event this run (and `extra`, a killed run's) made; return those left."""
        left = asyncio.run(self._delete_all([*self.made, *extra]))
        _write_pending(self.pending, left)
        self.made = []
        return left

    async def _delete_all(self, external_ids: list[str]) -> list[str]:
        left = []
        cleaner = Recorder(self.recorder.base_url, self.recorder.token)  # not part of the recording
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for external_id in dict.fromkeys(external_ids):
                path = f"{EVENTS_PATH}/{external_id}"
                try:
                    answer = await cleaner.send(
                        session, "clean-up", "DELETE", path, query={"externalAccountId": ACCOUNT}
                    )
                except aiohttp.ClientError:
                    left.append(external_id)
                    continue
                if answer.status not in (204, 404):
                    left.append(external_id)
        return left


def _read_pending(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    loaded = json.loads(path.read_text(encoding="utf-8") or "[]")
    return [str(item) for item in loaded] if isinstance(loaded, list) else []


def _write_pending(path: Path | None, ids: list[str]) -> None:
    if path is None:
        return
    unique = list(dict.fromkeys(ids))
    if unique:
        path.write_text(json.dumps(unique), encoding="utf-8")
    elif path.exists():
        path.unlink()


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so pytest still runs the clean-up teardown


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The HubSpot (live) or fake the suite talks to; its events are deleted at the end."""
    if LIVE and not os.environ.get(TOKEN_VAR):
        pytest.skip(SKIP_LIVE)
    run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
    made = _live_target(run_id) if LIVE else _fake_target(request, run_id)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    leftovers = _read_pending(made.pending)  # a killed run's events
    try:
        made.clean_up(leftovers)
        yield made
    finally:
        signal.signal(signal.SIGTERM, previous)
        left = made.clean_up()
        if LIVE:
            path = Path(
                os.environ.get(
                    "EVENTQ_LIVE_RECORDING",
                    str(ROOT / "tests/contract/recordings" / f"hubspot-{run_id}.json"),
                )
            )
            made.recorder.save(path, target=made.recorder.base_url)
            print(f"\nrecorded {len(made.recorder.exchanges)} exchanges to {path}")
        if left:
            pytest.fail(f"could not delete events {left}; they are listed in {made.pending}")


@pytest.fixture(scope="session")
def replay_fake_url(request: pytest.FixtureRequest) -> str:
    """The fake that recordings are replayed against: EVENTQ_CONTRACT_REPLAY_FAKE_URL when set
    (a running fake), else the session's."""
    return os.environ.get("EVENTQ_CONTRACT_REPLAY_FAKE_URL") or str(
        request.getfixturevalue("fake_process")
    )


def _live_target(run_id: str) -> Target:
    token = os.environ[TOKEN_VAR]
    base_url = os.environ.get("EVENTQ_LIVE_HUBSPOT_BASE_URL", "https://api.hubapi.com")
    pending = Path(os.environ.get("EVENTQ_LIVE_PENDING", str(ROOT / ".contract-pending.json")))
    return Target("hubspot", Recorder(base_url, token), run_id, pending)


def _fake_target(request: pytest.FixtureRequest, run_id: str) -> Target:
    base_url: str = request.getfixturevalue("fake_process")
    control = FakeHubSpot(base_url)
    control.reset()
    control.set_rate_limit(100, 10_000, daily=FAKE_DAILY)
    token = "contract-" + secrets.token_hex(12)
    control.add_token(token, app=f"contract-{run_id}", scopes=[WRITE_SCOPE, READ_SCOPE])
    return Target("fake", Recorder(base_url, token), run_id, None)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say once, last, why a live run did nothing."""
    if LIVE and not os.environ.get(TOKEN_VAR):
        terminalreporter.write_line(SKIP_LIVE)
