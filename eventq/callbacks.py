"""Signed callbacks: what one carries, how it is signed (Standard Webhooks), whom it may call.

A job with a `callbackUrl` gets one POST when it ends, with the body of its outcome-stream entry
(`eventq.outcomes.JobOutcome`, compact JSON). The request is signed as Standard Webhooks (the
scheme Svix publishes; Stripe's is the same idea) specify: headers `webhook-id` (the outcome
stream entry's id: the same on every retry, so receivers can drop repeats), `webhook-timestamp`
(Unix seconds of this try) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}` under EVENTQ_CALLBACK_SECRET). `check_signature` is the receiver's
check (examples/verify_callback.py is the same in ten lines, for the README). Only hosts in
EVENTQ_CALLBACK_ALLOWED_HOSTS may be called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, Field

from eventq.outcomes import JobOutcome
from eventq.schema import callback_host

__all__ = [
    "CALLBACK_TASK_NAME",
    "SIGNATURE_TOLERANCE_S",
    "Callback",
    "check_signature",
    "host_allowed",
    "signature_key",
    "signed_headers",
]

CALLBACK_TASK_NAME = "eventq.send_callback"
SIGNATURE_TOLERANCE_S = 300  # a receiver refuses a timestamp further than this from its clock


class Callback(BaseModel):
    """The callback task's one argument: where to POST which outcome (no secret in it)."""

    id: str = Field(description="The outcome stream entry's id, sent as `webhook-id`.")
    url: str
    outcome: JobOutcome

    def body(self) -> bytes:
        """Return the exact bytes POSTed and signed."""
        return self.outcome.model_dump_json().encode()


def host_allowed(url: str, allowed: Collection[str]) -> bool:
    """Return True when the URL's host is one of `allowed` (host names, any case)."""
    return callback_host(url) in {host.lower() for host in allowed}


def signature_key(secret: str) -> bytes:
    """Return the HMAC key of a secret: `whsec_`+base64 decoded, any other text as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the request headers of one callback try, its signature among them."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + _signature(key, msg_id, timestamp, body),
    }


def check_signature(key: bytes, headers: Mapping[str, Any], body: bytes, *, now: float) -> bool:
    """Return True when `headers` sign `body` with `key` and their timestamp is recent."""
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not msg_id or not stamp or not str(stamp).isdigit():
        return False
    if abs(now - int(stamp)) > SIGNATURE_TOLERANCE_S:
        return False
    expected = _signature(key, str(msg_id), int(stamp), body)
    given = str(headers.get("webhook-signature", "")).split()
    return any(
        hmac.compare_digest(sig.removeprefix("v1,"), expected)
        for sig in given
        if sig.startswith("v1,")
    )
