"""The audit log of admin actions: a capped Redis stream written by the HTTP service and the CLI.

An entry names who acted (an API key's configured name, or the operating-system user for the
CLI; never a key), the action, the dead-letter ids and the outcome. `GET /v1/audit` reads it back.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Sequence

import redis

from eventq.keys import Keys
from eventq.records import AuditAction, AuditEntry, AuditVia

__all__ = ["AUDIT_MAX_ENTRIES", "audit_entry", "cli_user", "record_sync", "xadd_args"]

log = logging.getLogger("eventq.audit")

AUDIT_MAX_ENTRIES = 100_000


def audit_entry(
    key_name: str,
    via: AuditVia,
    action: AuditAction,
    ids: Sequence[str],
    outcome: str,
    *,
    patched: bool = False,
) -> AuditEntry:
    """Build one entry stamped with the current time."""
    return AuditEntry(
        at=time.time(),
        keyName=key_name,
        via=via,
        action=action,
        ids=list(ids),
        outcome=outcome,
        patched=patched,
    )


def xadd_args(
    keys: Keys, entry: AuditEntry, max_entries: int = AUDIT_MAX_ENTRIES
) -> dict[str, object]:
    """Return the XADD arguments that append `entry` to the capped stream, and log the action."""
    log.info(
        "admin action: %s",
        entry.outcome,
        extra={
            "keyName": entry.keyName,
            "via": entry.via,
            "action": entry.action,
            "ids": len(entry.ids),
        },
    )
    return {
        "name": keys.audit,
        "fields": {"entry": entry.model_dump_json(exclude={"id"})},
        "maxlen": max_entries,
        "approximate": True,
    }


def record_sync(client: redis.Redis, keys: Keys, entry: AuditEntry) -> None:
    """Append `entry` with a blocking client (the CLI)."""
    client.xadd(**xadd_args(keys, entry))  # type: ignore[arg-type]


def cli_user() -> str:
    """The operating-system user running the CLI, as the audit log's `keyName`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
