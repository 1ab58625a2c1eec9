"""The audit log of admin actions (a capped Redis stream) and `GET /v1/audit` to read it back."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from aiohttp import web

from eventq.audit import AUDIT_MAX_ENTRIES, audit_entry, xadd_args
from eventq.keys import Keys
from eventq.records import AuditAction, AuditEntry
from eventq.redis_io import as_text
from producers.http_auth import Principal
from producers.http_bodies import json_response, validate_query
from producers.http_models import AuditPage, AuditQuery, ErrorBody
from producers.http_routes import Route
from producers.http_state import state_of

__all__ = ["AUDIT_MAX_ENTRIES", "AuditLog", "audit_routes"]

MAX_STREAM_PART = 2**64 - 1


def _before(entry_id: str) -> str | None:
    """Return the largest stream id below `entry_id` (None below the first possible id)."""
    millis_text, _, seq_text = entry_id.partition("-")
    millis, seq = int(millis_text), int(seq_text)
    if seq > 0:
        return f"{millis}-{seq - 1}"
    return f"{millis - 1}-{MAX_STREAM_PART}" if millis > 0 else None


class AuditLog:
    """Appends admin actions to `Keys.audit` (about the newest 100,000 kept) and pages them."""

    def __init__(
        self, client: aioredis.Redis, keys: Keys, max_entries: int = AUDIT_MAX_ENTRIES
    ) -> None:
        self._redis = client
        self._keys = keys
        self._max_entries = max_entries

    async def record(
        self,
        principal: Principal,
        action: AuditAction,
        ids: Sequence[str],
        outcome: str,
        *,
        patched: bool = False,
    ) -> None:
        """Append one action: the key's name (never the key), ids, time and outcome."""
        entry = audit_entry(principal.name, principal.via, action, ids, outcome, patched=patched)
        await self._redis.xadd(**xadd_args(self._keys, entry, self._max_entries))  # type: ignore[arg-type]

    async def page(self, limit: int, cursor: str | None = None) -> AuditPage:
        """Return up to `limit` entries, newest first, older than `cursor` (an entry id)."""
        newest = "+" if cursor is None else _before(cursor)
        if newest is None:
            return AuditPage(entries=[])
        rows = await self._redis.xrevrange(self._keys.audit, max=newest, min="-", count=limit + 1)
        entries = [
            AuditEntry.model_validate_json(fields[b"entry"]).model_copy(update={"id": as_text(sid)})
            for sid, fields in rows[:limit]
        ]
        more = len(rows) > limit
        return AuditPage(entries=entries, nextCursor=entries[-1].id if more else None)


async def get_audit(request: web.Request) -> web.Response:
    """Return admin actions, newest first, with cursor pagination."""
    query = validate_query(AuditQuery, request)
    page = await state_of(request).audit.page(query.limit, query.cursor)
    return json_response(page)


def audit_routes() -> list[Route]:
    """Return the audit-log route."""
    return [
        Route(
            "GET",
            "/v1/audit",
            get_audit,
            "admin",
            "listAudit",
            "Admin actions (login, replay, dry run, delete), newest first",
            "admin",
            {200: AuditPage, 422: ErrorBody},
            query=AuditQuery,
        )
    ]
