"""The event store: created marketing events and the response shapes HubSpot returns for them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fake_hubspot.validator import spec_schemas

__all__ = ["EventStore", "iso_utc"]

_FIRST_OBJECT_ID = 100_000_001


def _fields(schema: str) -> tuple[str, ...]:
    return tuple(spec_schemas()[schema]["properties"])


_CREATE_FIELDS = _fields("MarketingEventDefaultResponse")
_READ_FIELDS = _fields("MarketingEventPublicReadResponse")
_UPSERT_FIELDS = _fields("MarketingEventPublicDefaultResponse")


def iso_utc(epoch_s: float) -> str:
    """Return `epoch_s` as HubSpot writes timestamps: ISO 8601, UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _full_property(item: Any, now_ms: int) -> Any:
    """Return a sent custom property as HubSpot echoes it: every `PropertyValue` field set."""
    if not isinstance(item, dict):
        return item
    return {
        "dataSensitivity": "none",
        "isEncrypted": False,
        "isLargeValue": False,
        "maskedSubstrings": {"substrings": []},
        "persistenceTimestamp": now_ms,
        "requestId": str(uuid.uuid4()),
        "selectedByUser": False,
        "selectedByUserTimestamp": 0,
        "source": "API",
        "sourceId": "",
        "sourceLabel": "",
        "sourceMetadata": "",
        "sourceUpstreamDeployable": "",
        "sourceVid": [],
        "timestamp": now_ms,
        "unit": "",
        "updatedByUserId": 0,
        "useTimestampAsPersistenceTimestamp": False,
        **item,
    }


class EventStore:
    """Every created event, in order, indexed by (identity, externalAccountId, externalEventId).

    Object ids are numeric strings that keep increasing across `clear()`.
    """

    def __init__(self) -> None:
        self._next_id = _FIRST_OBJECT_ID
        self.records: list[dict[str, Any]] = []
        self._index: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def clear(self) -> None:
        """Forget every event (object ids are not reused)."""
        self.records = []
        self._index = {}

    def __len__(self) -> int:
        return len(self.records)

    def find(self, identity: str, account_id: str, event_id: str) -> dict[str, Any] | None:
        """Return the latest event `identity` created under these external ids, or None."""
        matches = self._index.get((identity, account_id, event_id))
        return matches[-1] if matches else None

    def delete(self, identity: str, account_id: str, event_id: str) -> bool:
        """Forget the events `identity` has under these external ids; return whether any was."""
        matches = self._index.pop((identity, account_id, event_id), [])
        if matches:
            self.records = [r for r in self.records if all(r is not m for m in matches)]
        return bool(matches)

    def create(self, identity: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store a validated create body for `identity`; return the event record."""
        object_id = str(self._next_id)
        self._next_id += 1
        now = time.time()
        record: dict[str, Any] = {
            "objectId": object_id,
            "identity": identity,
            "externalAccountId": body["externalAccountId"],
            "externalEventId": body["externalEventId"],
            "createdAt": now,
            "updatedAt": now,
            "body": body,
        }
        self.records.append(record)
        key = (identity, body["externalAccountId"], body["externalEventId"])
        self._index.setdefault(key, []).append(record)
        return record

    def upsert(self, identity: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the event, or replace the body of the one `identity` has under these ids."""
        record = self.find(identity, body["externalAccountId"], body["externalEventId"])
        if record is None:
            return self.create(identity, body)
        record["body"] = body
        record["updatedAt"] = time.time()
        return record

    @staticmethod
    def _echo(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        body: dict[str, Any] = record["body"]
        answer = {name: body[name] for name in fields if name in body}
        answer.setdefault("eventCancelled", False)
        answer.setdefault("eventCompleted", False)
        now_ms = int(record["createdAt"] * 1000)
        answer["customProperties"] = [
            _full_property(item, now_ms) for item in body.get("customProperties", [])
        ]
        answer["objectId"] = record["objectId"]
        return answer

    def create_response(self, record: dict[str, Any]) -> dict[str, Any]:
        """Return the `MarketingEventDefaultResponse` for a created event."""
        return self._echo(record, _CREATE_FIELDS)

    def upsert_response(self, record: dict[str, Any]) -> dict[str, Any]:
        """Return the `MarketingEventPublicDefaultResponse` for an upserted event."""
        answer = self._echo(record, _UPSERT_FIELDS)
        answer.update(
            id=record["objectId"],
            createdAt=iso_utc(record["createdAt"]),
            updatedAt=iso_utc(record["updatedAt"]),
        )
        return answer

    def read_response(self, record: dict[str, Any]) -> dict[str, Any]:
        """Return the `MarketingEventPublicReadResponse` for an event."""
        answer = self._echo(record, _READ_FIELDS)
        answer.update(
            id=record["objectId"],
            externalEventId=record["externalEventId"],
            createdAt=iso_utc(record["createdAt"]),
            updatedAt=iso_utc(record["updatedAt"]),
            registrants=0,
            attendees=0,
            cancellations=0,
            noShows=0,
        )
        return answer
