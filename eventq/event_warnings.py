"""eventq's advice on an event HubSpot's spec accepts: each a `FieldWarning`, never a refusal.

These are the checks eventq believes in but HubSpot's spec and documented rules do not make
(lengths, the shape of `eventUrl`, the order of the dates, blank names, fields HubSpot does not
know). An event with warnings is enqueued and delivered as HubSpot accepts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eventq.schema import CustomProperty, MarketingEvent

__all__ = ["FieldWarning", "event_warnings", "unknown_fields"]

MAX_PROPERTIES = 500
_URL = re.compile(r"^https?://\S+$")
# (field, most characters advised); ids stay short enough for URLs and Redis keys
_EVENT_LENGTHS = (
    ("externalAccountId", 256),
    ("externalEventId", 256),
    ("eventName", 512),
    ("eventOrganizer", 512),
    ("eventType", 512),
    ("eventDescription", 65_536),
    ("eventUrl", 2048),
)
_PROPERTY_LENGTHS = (
    ("name", 512),
    ("value", 65_536),
    ("requestId", 512),
    ("sourceId", 512),
    ("sourceLabel", 512),
    ("sourceMetadata", 65_536),
    ("sourceUpstreamDeployable", 512),
    ("unit", 512),
)
_TRIMMED = ("externalAccountId", "externalEventId", "eventName", "eventOrganizer")


@dataclass(frozen=True)
class FieldWarning:
    """Advice on a field HubSpot accepts; `field` is a dotted path (`customProperties.0.name`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def event_warnings(
    event: MarketingEvent, raw: Mapping[str, Any] | None = None
) -> list[FieldWarning]:
    """Return eventq's warnings about `event` (and the unknown fields of `raw`, its input)."""
    found = [*_text_warnings(event), *_url_warnings(event), *_date_warnings(event)]
    if len(event.customProperties) > MAX_PROPERTIES:
        found.append(
            FieldWarning(
                "customProperties", f"more than {MAX_PROPERTIES} items; HubSpot may refuse"
            )
        )
    for index, prop in enumerate(event.customProperties):
        found += _property_warnings(prop, f"customProperties.{index}")
    if raw is not None:
        found += unknown_fields(raw)
    return found


def unknown_fields(raw: Mapping[str, Any]) -> list[FieldWarning]:
    """Return a warning for each field of `raw` (and of its custom properties) HubSpot lacks."""
    found = _unknown(raw, MarketingEvent.model_fields, "")
    props = raw.get("customProperties")
    if isinstance(props, list):
        for index, prop in enumerate(props):
            if isinstance(prop, Mapping):
                found += _unknown(prop, CustomProperty.model_fields, f"customProperties.{index}.")
    return found


def _unknown(raw: Mapping[str, Any], known: Iterable[str], prefix: str) -> list[FieldWarning]:
    names = set(known)
    message = "not a field of HubSpot's create body; left out of what is sent"
    return [FieldWarning(f"{prefix}{key}", message) for key in raw if key not in names]


def _too_long(value: str | None, most: int) -> bool:
    return value is not None and len(value) > most


def _length_warning(path: str, most: int) -> FieldWarning:
    return FieldWarning(path, f"longer than {most} characters; HubSpot may refuse or cut it")


def _text_warnings(event: MarketingEvent) -> list[FieldWarning]:
    found = [
        _length_warning(name, most)
        for name, most in _EVENT_LENGTHS
        if _too_long(getattr(event, name), most)
    ]
    for name in _TRIMMED:
        value: str = getattr(event, name)
        if not value.strip():
            found.append(FieldWarning(name, "is blank"))
        elif value != value.strip():
            found.append(FieldWarning(name, "has leading or trailing spaces (sent as given)"))
    return found


def _url_warnings(event: MarketingEvent) -> list[FieldWarning]:
    if event.eventUrl is None or _URL.match(event.eventUrl):
        return []
    return [FieldWarning("eventUrl", "not an http(s) URL (sent as given)")]


def _date_warnings(event: MarketingEvent) -> list[FieldWarning]:
    start, end = event.startDateTime, event.endDateTime
    if start is not None and end is not None and end < start:
        return [FieldWarning("endDateTime", "is before startDateTime")]
    return []


def _property_warnings(prop: CustomProperty, path: str) -> list[FieldWarning]:
    found = [
        _length_warning(f"{path}.{name}", most)
        for name, most in _PROPERTY_LENGTHS
        if _too_long(getattr(prop, name), most)
    ]
    if not prop.name.strip():
        found.append(FieldWarning(f"{path}.name", "is blank"))
    return found
