"""Recordings of what HubSpot answered, replayed against the fake: the fake is kept honest by
HubSpot's own answers, not by our reading of its documents.

A recording is a JSON file of exchanges, one per request the contract suite
(tests/contract/) sent: the request as sent (method, path, query, JSON body: event data, never a
credential) and the answer's status, headers and body *shape* (the type of every field, never a
value). Request headers are not recorded at all (the token travels there); answer header values
are kept only for `Content-Type` and HubSpot's `X-HubSpot-RateLimit-*`, the others by name; any
secret passed to the recorder is replaced wherever it might still appear.

`replay` sends a recording's requests, in order, to another server (the fake) and `compare`
lists every difference between the two answers of each exchange: status, the compared headers
(`Content-Type`'s media type, `Retry-After`, every `X-HubSpot-*` by name) and the body shape.

    python -m fake_hubspot.contract RECORDING [--fake-url URL --token TOKEN]

replays RECORDING against a fake it starts (or the one at URL) and prints the differences;
exit 1 when there is any.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from fake_hubspot.config import READ_SCOPE, WRITE_SCOPE
from fake_hubspot.control import start_fake_subprocess, stop_fake_subprocess

__all__ = [
    "Answer",
    "Recorder",
    "compare",
    "compared_headers",
    "load_recording",
    "main",
    "replay",
    "shape_of",
]

_KEPT_VALUES = ("content-type", "x-hubspot-ratelimit-")
_DROPPED = frozenset({"set-cookie", "authorization", "cookie"})
_COMPARED = frozenset({"content-type", "retry-after"})
_FAKE_DAILY = 1_000_000  # never reached by a replay
_FAKE_TOKEN = "contract-token"  # noqa: S105 - the token of a fake the replay starts
_REDACTED = "[secret]"  # what a secret is replaced with


def shape_of(value: Any) -> Any:
    """Return the shape of a JSON value: an object's keys with their shapes, a list's first
    element's shape (`[]` when empty), and `string`, `number`, `boolean` or `null` for scalars."""
    if isinstance(value, dict):
        return {str(k): shape_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape_of(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


def compared_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the headers a replay must match: `Content-Type` (media type only), `Retry-After`
    and every `X-HubSpot-*`, by lower-case name; values of the rate-limit ones are not compared
    (they count requests), so they map to `present`."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "content-type":
            found[lowered] = value.split(";")[0].strip().lower()
        elif lowered in _COMPARED or lowered.startswith("x-hubspot-"):
            found[lowered] = "present"
    return found


@dataclass(frozen=True)
class Answer:
    """An answer as the test reads it: status, headers and the parsed JSON body (or {})."""

    status: int
    headers: Mapping[str, str]
    body: Any


@dataclass
class Recorder:
    """Sends requests to one server with one token and records each exchange, secrets removed."""

    base_url: str
    token: str = field(repr=False)
    secrets: Sequence[str] = field(default=(), repr=False)
    exchanges: list[dict[str, Any]] = field(default_factory=list, repr=False)

    async def send(
        self,
        session: aiohttp.ClientSession,
        step: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """Send one request; record it as `step` and return HubSpot's (or the fake's) answer."""
        answer = await _send(session, self.base_url, self.token, method, path, query, body)
        self.exchanges.append(
            self._redacted(
                {
                    "step": step,
                    "request": {
                        "method": method,
                        "path": path,
                        "query": dict(query or {}),
                        "body": body,
                    },
                    "response": _recorded_response(answer),
                }
            )
        )
        return answer

    def _redacted(self, exchange: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(exchange)
        for secret in [self.token, *self.secrets]:
            if secret:
                text = text.replace(secret, _REDACTED)
        loaded: dict[str, Any] = json.loads(text)
        return loaded

    def save(self, path: Path, *, target: str) -> None:
        """Write the recording (creating its directory) as pretty JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        recording = {
            "target": target,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exchanges": self.exchanges,
        }
        path.write_text(json.dumps(recording, indent=2) + "\n", encoding="utf-8")


async def _send(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    method: str,
    path: str,
    query: Mapping[str, str] | None,
    body: Any,
) -> Answer:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body)
    url = base_url.rstrip("/") + path
    async with session.request(method, url, params=query, data=data, headers=headers) as resp:
        text = await resp.text()
        return Answer(resp.status, dict(resp.headers), _json(text))


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {"<not json>": text[:80]}


def _recorded_response(answer: Answer) -> dict[str, Any]:
    headers = {}
    for name, value in answer.headers.items():
        lowered = name.lower()
        if lowered in _DROPPED:
            continue
        headers[name] = value if lowered.startswith(_KEPT_VALUES) else "<not kept>"
    return {"status": answer.status, "headers": headers, "body_shape": shape_of(answer.body)}


def load_recording(path: Path) -> dict[str, Any]:
    """Return a recording read from `path`; raise ValueError naming what is wrong with it."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read recording {path}: {error}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("exchanges"), list):
        raise ValueError(f"recording {path}: expected an object with a list `exchanges`")
    return loaded


async def replay(recording: Mapping[str, Any], base_url: str, token: str) -> list[dict[str, Any]]:
    """Send every request of `recording`, in order, to `base_url`; return the new exchanges."""
    recorder = Recorder(base_url, token)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for exchange in recording["exchanges"]:
            request = exchange["request"]
            await recorder.send(
                session,
                exchange["step"],
                request["method"],
                request["path"],
                query=request.get("query") or None,
                body=request.get("body"),
            )
    return recorder.exchanges


def compare(
    recorded: Sequence[Mapping[str, Any]], replayed: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Return every difference between two runs of the same requests, one line each, naming
    the step, what differs, HubSpot's (the recording's) side first; [] when none."""
    differences: list[str] = []
    if len(recorded) != len(replayed):
        differences.append(f"{len(recorded)} exchanges recorded, {len(replayed)} replayed")
    for ours, theirs in zip(recorded, replayed, strict=False):
        step = ours.get("step", "?")
        want, got = ours["response"], theirs["response"]
        if want["status"] != got["status"]:
            differences.append(f"{step}: status {want['status']} recorded, {got['status']} now")
        differences += _header_differences(step, want["headers"], got["headers"])
        differences += _shape_differences(f"{step}: body", want["body_shape"], got["body_shape"])
    return differences


def _header_differences(step: str, want: Mapping[str, str], got: Mapping[str, str]) -> list[str]:
    ours, theirs = compared_headers(want), compared_headers(got)
    lines = [f"{step}: header {n} recorded, missing now" for n in sorted(set(ours) - set(theirs))]
    lines += [
        f"{step}: header {n} not recorded, present now" for n in sorted(set(theirs) - set(ours))
    ]
    for name in sorted(set(ours) & set(theirs)):
        if ours[name] != theirs[name]:
            lines.append(f"{step}: header {name} {ours[name]!r} recorded, {theirs[name]!r} now")
    return lines


def _shape_differences(where: str, want: Any, got: Any) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        lines = [f"{where}.{k}: recorded, missing now" for k in sorted(set(want) - set(got))]
        lines += [f"{where}.{k}: not recorded, present now" for k in sorted(set(got) - set(want))]
        for key in sorted(set(want) & set(got)):
            lines += _shape_differences(f"{where}.{key}", want[key], got[key])
        return lines
    if isinstance(want, list) and isinstance(got, list):
        if want and got:  # an empty list says nothing of its elements
            return _shape_differences(f"{where}[]", want[0], got[0])
        return []
    if _kind(want) != _kind(got):
        return [f"{where}: {_kind(want)} recorded, {_kind(got)} now"]
    return []


def _kind(shape: Any) -> str:
    if isinstance(shape, dict):
        return "object"
    if isinstance(shape, list):
        return "array"
    return str(shape)


def main(argv: Sequence[str] | None = None) -> int:
    """Replay a recording against the fake and print the differences; 1 when there are any."""
    parser = argparse.ArgumentParser(
        prog="python -m fake_hubspot.contract",
        description="Replay a recording of HubSpot's answers against the fake; print every "
        "difference (exit 1 when there is any).",
    )
    parser.add_argument("recording", type=Path, help="a recording made by `make test-live`")
    parser.add_argument("--fake-url", help="a running fake (default: start one)")
    parser.add_argument("--token", default=_FAKE_TOKEN, help="a token the fake accepts")
    args = parser.parse_args(argv)
    try:
        recording = load_recording(args.recording)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    differences = replay_against_fake(recording, args.fake_url, args.token)
    for line in differences:
        print(line)
    count = len(recording["exchanges"])
    print(f"{len(differences)} difference(s) in {count} exchanges", file=sys.stderr)
    return 1 if differences else 0


def replay_against_fake(
    recording: Mapping[str, Any], fake_url: str | None = None, token: str = _FAKE_TOKEN
) -> list[str]:
    """Replay `recording` against the fake at `fake_url` (or a fresh one, with `token` granted
    the read and write scopes) and return the differences."""
    process = None
    if fake_url is None:
        scopes = f"{WRITE_SCOPE},{READ_SCOPE}"
        # a private app's answers carry the daily budget's headers, as HubSpot's do
        args = ["--token", token, "--token-scopes", scopes, "--daily-limit", str(_FAKE_DAILY)]
        process, fake_url = start_fake_subprocess(args=args)
    try:
        replayed = asyncio.run(replay(recording, fake_url, token))
    finally:
        if process is not None:
            stop_fake_subprocess(process)
    return compare(recording["exchanges"], replayed)


if __name__ == "__main__":
    raise SystemExit(main())
