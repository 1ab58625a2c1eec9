"""Names of every Redis key eventq writes, in one place, under one configurable prefix."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventq.schema import JobEnvelope

__all__ = ["ID_PATTERN", "Keys", "event_identity", "is_valid_id"]

# The form of a job id and a dead-letter id: what eventq issues (32 hex digits) and what a
# producer may choose for a job (a Celery task id, `order-42.v2`). Ids become part of key names,
# so nothing outside this form (`:`, `*`, spaces, other scripts) may reach one: a `:` would
# address another key (`<job>:history`), a `*` a pattern.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def is_valid_id(text: str) -> bool:
    """Return whether `text` has the form of a job or dead-letter id (`ID_PATTERN`)."""
    return _ID.fullmatch(text) is not None


@functools.lru_cache(maxsize=4096)
def event_identity(portal_id: str | None, external_account_id: str, external_event_id: str) -> str:
    """Return a short stable hash naming one HubSpot event (portal, account id, event id).

    Hashed so that ids containing `:` cannot collide and user data never shapes key names.
    Cached: an attempt names its event's dedupe and ledger keys several times.
    """
    raw = json.dumps([portal_id or "", external_account_id, external_event_id])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Keys:
    """Key names under `prefix` (the `EVENTQ_KEY_PREFIX` setting)."""

    prefix: str

    @property
    def durable_mark(self) -> str:
        """Return the key a durable write touches just before its `WAIT` (eventq.durable_writes)."""
        return f"{self.prefix}:durable-mark"

    def job(self, job_id: str) -> str:
        """Return the hash holding one job's status (its envelope is `job_envelope`)."""
        return f"{self.prefix}:job:{job_id}"

    def job_history(self, job_id: str) -> str:
        """Return the list of one job's attempt records (JSON)."""
        return f"{self.prefix}:job:{job_id}:history"

    def job_envelope(self, job_id: str) -> str:
        """Return the string holding the JSON envelope a job's next attempt carries.

        Beside the job's hash rather than in it: a hash of short fields stays small (Redis
        keeps it as a listpack), which the envelope's few hundred bytes would prevent.
        """
        return f"{self.prefix}:job:{job_id}:envelope"

    def job_lock(self, job_id: str) -> str:
        """Return the lock a worker holds while it runs one attempt of a job."""
        return f"{self.prefix}:job:{job_id}:lock"

    def dedupe(self, identity: str) -> str:
        """Return the key mapping an event identity to the job delivering it."""
        return f"{self.prefix}:dedupe:{identity}"

    def dedupe_for(self, envelope: JobEnvelope) -> str:
        """Return the dedupe key of the event an envelope carries."""
        event = envelope.event
        identity = event_identity(envelope.portalId, event.externalAccountId, event.externalEventId)
        return self.dedupe(identity)

    def idempotency(self, key_hash: str) -> str:
        """Return the key mapping an HTTP `Idempotency-Key` to its job."""
        return f"{self.prefix}:idem:{key_hash}"

    def ledger(self, identity: str) -> str:
        """Return the delivered-events ledger entry (value: HubSpot objectId, `-` when none)."""
        return f"{self.prefix}:ledger:{identity}"

    @property
    def schedule(self) -> str:
        """Return the sorted set of jobs waiting for their next attempt (score: due time)."""
        return f"{self.prefix}:schedule"

    @property
    def unfinished(self) -> str:
        """Return the sorted set of unfinished jobs out of the schedule (score: last progress).

        The recovery sweep republishes a job that makes no progress for too long: its message
        was lost (a Redis crash between the broker's pop and its unacked record, say).
        """
        return f"{self.prefix}:unfinished"

    @property
    def dlq(self) -> str:
        """Return the sorted set of dead-letter ids (score: dead-lettered time)."""
        return f"{self.prefix}:dlq"

    def dlq_entry(self, entry_id: str) -> str:
        """Return the key holding one dead-letter entry (JSON)."""
        return f"{self.prefix}:dlq:entry:{entry_id}"

    @property
    def dlq_reasons(self) -> str:
        """Return the hash of DLQ entry counts by reason (kept on every add and removal)."""
        return f"{self.prefix}:dlq:reasons"

    @property
    def dlq_groups(self) -> str:
        """Return the sorted set of DLQ entry counts by reason and HubSpot message (score)."""
        return f"{self.prefix}:dlq:groups"

    def activity(self, minute: int) -> str:
        """Return the hash of attempt outcomes counted in one minute (epoch seconds // 60)."""
        return f"{self.prefix}:activity:{minute}"

    @property
    def audit(self) -> str:
        """Return the stream of admin actions (one JSON field `entry` per action)."""
        return f"{self.prefix}:audit"

    @property
    def outcomes(self) -> str:
        """Return the stream of job outcomes (one JSON field `outcome` per ended job)."""
        return f"{self.prefix}:outcomes"

    def session(self, session_hash: str) -> str:
        """Return the key of one admin-page session (by the hash of its cookie value)."""
        return f"{self.prefix}:session:{session_hash}"

    @property
    def counters(self) -> str:
        """Return the hash of cluster-wide counters (delivered, dead-lettered, …)."""
        return f"{self.prefix}:counters"

    @property
    def sweep_lock(self) -> str:
        """Return the lock that lets one process per interval run the recovery sweep."""
        return f"{self.prefix}:unfinished:sweep"

    def rate_limit(self, bucket: str, part: str) -> str:
        """Return one part (`conf`, `log`, `pause`) of a rate-limiter bucket."""
        return f"{self.prefix}:rl:{bucket}:{part}"

    def breaker(self, target_digest: str) -> str:
        """Return the hash holding the circuit-breaker state of one HubSpot base URL."""
        return f"{self.prefix}:breaker:{target_digest}"

    def oauth(self, portal: str, part: str) -> str:
        """Return one part (`token`, `lock`, `hold`, `refresh`) of an OAuth account's state."""
        return f"{self.prefix}:oauth:{portal}:{part}"
