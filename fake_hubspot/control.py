"""A synchronous, stdlib-only client for the `/_fake/` control routes, and a subprocess helper."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventq.errors import EventqError

__all__ = [
    "FakeControlError",
    "FakeHubSpot",
    "fake_subprocess",
    "free_port",
    "max_in_any_window",
    "start_fake_subprocess",
    "stop_fake_subprocess",
]


class FakeControlError(EventqError, RuntimeError):
    """A control route refused a call (bad arguments) or the fake could not be reached."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class FakeHubSpot:
    """Steers a running fake HubSpot through its `/_fake/` routes (blocking calls)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, route: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.base_url}/_fake/{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise FakeControlError(
                f"{method} /_fake/{route} answered {exc.code}: {body}", exc.code, body
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise FakeControlError(f"{method} /_fake/{route} failed: {exc}") from exc

    def _post(self, route: str, payload: Mapping[str, Any] | None = None) -> Any:
        return self._call("POST", route, payload or {})

    def is_up(self) -> bool:
        """Return whether the fake answers `GET /_fake/stats`."""
        try:
            self.stats()
        except FakeControlError:
            return False
        return True

    def reset(self) -> None:
        """Return the fake to its startup configuration, forgetting events and records."""
        self._post("reset")

    def set_latency(
        self, ms: float | None = None, min_ms: float | None = None, max_ms: float | None = None
    ) -> None:
        """Delay every API answer by `ms`, or uniformly between `min_ms` and `max_ms`."""
        self._post("latency", {"ms": ms, "min_ms": min_ms, "max_ms": max_ms})

    def fail_next(
        self,
        count: int,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        *,
        include_get: bool = False,
    ) -> None:
        """Answer the next `count` writes (and GETs if `include_get`) with `status`."""
        payload = {
            "count": count,
            "status": status,
            "headers": dict(headers or {}),
            "body": body,
            "include_get": include_get,
        }
        self._post("fail-next", payload)

    def set_failure_rate(self, rate: float, status: int = 503) -> None:
        """Answer a random fraction `rate` (0..1) of writes (create and upsert) with `status`."""
        self._post("failure-rate", {"rate": rate, "status": status})

    def hang(self, count: int) -> None:
        """Make the next `count` creates never answer (0 cancels)."""
        self._post("hang", {"count": count})

    def release_hung(self) -> None:
        """End every hung request now by closing its connection."""
        self._post("release")

    def close_after_create(self, count: int) -> None:
        """Make the next `count` writes store the event, then close without answering."""
        self._post("close-after-create", {"count": count})

    def set_close_rate(self, rate: float) -> None:
        """Make a random fraction `rate` (0..1) of writes store the event, then close."""
        self._post("close-rate", {"rate": rate})

    def configure_batch(
        self,
        *,
        max_size: int | None = None,
        error_status: int | None = None,
        error_pointer: str | None = None,
        shuffle: bool | None = None,
    ) -> dict[str, Any]:
        """Change the batch upsert (arguments left None keep their value); return its settings.

        `max_size`: more inputs answer 400 naming the limit. `error_status`: 207 (default) or
        200 for an answer with `errors`. `error_pointer`: how an error names its input,
        `external_id` (`context`), `index` (`errors[].in` as `inputs[3].field`) or `none`.
        `shuffle`: answer `results` in random order.
        """
        payload = {
            "max_size": max_size,
            "error_status": error_status,
            "error_pointer": error_pointer,
            "shuffle": shuffle,
        }
        answer: dict[str, Any] = self._post("batch", payload)
        return answer

    def refuse_event(self, external_event_id: str, message: str | None = None) -> None:
        """Refuse every write of this event with `message` (a default names it): an entry of
        `errors` within a batch upsert, a 400 VALIDATION_ERROR for a POST or PUT."""
        payload = {"external_event_id": external_event_id, "message": message}
        self._post("refuse", payload)

    def accept_event(self, external_event_id: str) -> None:
        """Stop refusing this event's writes."""
        self._post("refuse", {"external_event_id": external_event_id, "refuse": False})

    def set_rate_limit(
        self,
        requests: int | None,
        window_ms: int = 10_000,
        daily: int | None = None,
        daily_timezone: str = "UTC",
    ) -> None:
        """Set the rolling limit per app/portal (`requests` None = off) and the daily budget of
        private apps, reset at midnight in `daily_timezone` (OAuth portals have none)."""
        payload = {
            "requests": requests,
            "window_ms": window_ms,
            "daily": daily,
            "daily_timezone": daily_timezone,
        }
        self._post("rate-limit", payload)

    def start_other_client(self, token: str, requests: int, window_ms: int = 10_000) -> str:
        """Spend `requests` evenly per `window_ms` of `token`'s budget in the background, as
        another integration of the same app would (0 stops it); return the identity.

        Its requests are not recorded; `stats()["other_client"]` counts them (sent, ok,
        rate_limited).
        """
        payload = {"token": token, "requests": requests, "window_ms": window_ms}
        return str(self._post("other-client", payload)["identity"])

    def stop_other_client(self, token: str) -> None:
        """Stop the simulated other client."""
        self.start_other_client(token, 0)

    def disable_rate_limit(self) -> None:
        """Turn off the rolling limit and the daily budget."""
        self.set_rate_limit(None)

    def set_account_rate_limit(
        self, portal_id: int, requests: int | None, window_ms: int = 10_000
    ) -> None:
        """Give `portal_id` its own rolling limit (`requests` None = back to the global one)."""
        payload = {"portal_id": portal_id, "requests": requests, "window_ms": window_ms}
        self._post("account-rate-limit", payload)

    def add_token(
        self, token: str, app: str | None = None, scopes: Sequence[str] | None = None
    ) -> str:
        """Accept a private-app `token` (own rate-limit bucket); return its identity name.

        `scopes` None: the fake's configured private-app scopes (default: the write scope only).
        """
        payload = {"token": token, "app": app, "scopes": None if scopes is None else list(scopes)}
        return str(self._post("tokens", payload)["identity"])

    def configure_oauth(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token_lifetime_s: float | None = None,
        refresh_tokens: Mapping[str, int] | None = None,
        scopes: Sequence[str] | None = None,
    ) -> None:
        """Change the OAuth client or token lifetime; accept `refresh_tokens` (token → portal).

        The added refresh tokens carry `scopes` (default: oauth plus marketing-events read and
        write).
        """
        payload: dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "access_token_lifetime_s": access_token_lifetime_s,
        }
        grants = []
        for token, portal_id in (refresh_tokens or {}).items():
            grant: dict[str, Any] = {"refresh_token": token, "portal_id": portal_id}
            if scopes is not None:
                grant["scopes"] = list(scopes)
            grants.append(grant)
        payload["refresh_tokens"] = grants
        self._post("oauth", payload)

    def revoke_refresh_token(self, token: str, *, access_tokens: bool = False) -> bool:
        """Revoke a refresh token (and its access tokens if asked); return whether it existed."""
        payload = {"refresh_token": token, "access_tokens": access_tokens}
        return bool(self._post("oauth/revoke", payload)["known"])

    def rotate_refresh_token(
        self, portal_id: int, *, count: int = 1, revoke_old: bool = True
    ) -> None:
        """Make the next `count` refreshes of `portal_id` answer a new refresh token.

        With `revoke_old` the refresh token used is revoked as its successor is issued, so only
        the newest works; without, the old one keeps working too.
        """
        payload = {"portal_id": portal_id, "count": count, "revoke_old": revoke_old}
        self._post("oauth/rotate", payload)

    def rotated_refresh_tokens(self) -> list[dict[str, Any]]:
        """Return the refresh tokens rotations issued (`portal_id`, `refresh_token`), in order."""
        answer: list[dict[str, Any]] = self._call("GET", "oauth/rotated")
        return answer

    def fail_next_token_requests(
        self,
        count: int,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        portal_id: int | None = None,
    ) -> None:
        """Answer the next `count` token refreshes of `portal_id` (None: of any) with `status`."""
        payload = {
            "count": count,
            "status": status,
            "headers": dict(headers or {}),
            "portal_id": portal_id,
        }
        self._post("oauth/fail-next", payload)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the recorded API requests from index `since` on."""
        answer: list[dict[str, Any]] = self._call("GET", f"requests?since={int(since)}")
        return answer

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the created events from index `since` on."""
        answer: list[dict[str, Any]] = self._call("GET", f"events?since={int(since)}")
        return answer

    def stats(self) -> dict[str, Any]:
        """Return the counters (`requests`, `by_status`, `events`, `rate_limited`, …)."""
        answer: dict[str, Any] = self._call("GET", "stats")
        return answer

    def wait_for_events(
        self, n: int, timeout_s: float = 10.0, poll_s: float = 0.05
    ) -> list[dict[str, Any]]:
        """Wait until at least `n` events exist; return them all or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            count = int(self.stats()["events"])
            if count >= n:
                return self.events()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{count} of {n} events after {timeout_s} s")
            time.sleep(poll_s)


def max_in_any_window(times: Iterable[float], window_s: float) -> int:
    """Return the most of `times` (e.g. request arrivals at the fake) in any window [t, t + w).

    The measure of a rolling-window rate limit, used by the tests and the benchmark alike.
    """
    ordered = sorted(times)
    best, low = 0, 0
    for high, at in enumerate(ordered):
        while at - ordered[low] >= window_s:
            low += 1
        best = max(best, high - low + 1)
    return best


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_fake_subprocess(
    port: int | None = None,
    args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    timeout_s: float = 15.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m fake_hubspot` on `port` (a free one if None); wait until it answers.

    Returns the process and its base URL; stop it with `stop_fake_subprocess`. Its stderr is
    inherited, stdout discarded.
    """
    port = free_port(host) if port is None else port
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "fake_hubspot", "--host", host, "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    base_url = f"http://{host}:{port}"
    client = FakeHubSpot(base_url, timeout_s=1.0)
    deadline = time.monotonic() + timeout_s
    while not client.is_up():
        if process.poll() is not None:
            raise RuntimeError(f"fake HubSpot exited with status {process.returncode}")
        if time.monotonic() >= deadline:
            stop_fake_subprocess(process)
            raise TimeoutError(f"fake HubSpot did not answer on {base_url} in {timeout_s} s")
        time.sleep(0.05)
    return process, base_url


def stop_fake_subprocess(process: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Stop the fake gracefully (SIGTERM), killing it if it does not exit in `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fake_subprocess(
    port: int | None = None, args: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run the fake in a subprocess for the duration of a `with` block."""
    process, base_url = start_fake_subprocess(port, args)
    try:
        yield process, base_url
    finally:
        stop_fake_subprocess(process)
