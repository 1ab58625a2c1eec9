"""The create-body validator, compiled once from HubSpot's spec schemas shipped with eventq."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from eventq.schema import spec_schemas  # the spec's schemas as eventq ships them

__all__ = [
    "BodyValidator",
    "is_date_time",
    "resolved_schema",
    "spec_schemas",
]

_REF_PREFIX = "#/components/schemas/"
_DATE_TIME_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_CREATE = "MarketingEventCreateRequestParams"
_PROPERTY = "PropertyValue"
_ENUM_SHOWN = 5
_MESSAGE_MAX = 300


def resolved_schema(name: str, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
    """Return schema `name` with every `$ref` inlined; `overrides` replaces named schemas."""
    schemas = {**spec_schemas(), **(overrides or {})}

    def inline(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
                target = ref.removeprefix(_REF_PREFIX)
                if target in seen:
                    raise ValueError(f"recursive schema reference to {target}")
                return inline(schemas[target], (*seen, target))
            return {key: inline(value, seen) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        return node

    return inline(schemas[name], (name,))


def is_date_time(value: object) -> bool:
    """Return whether `value` is an RFC 3339 date-time (as JSON Schema's `date-time` format)."""
    if not isinstance(value, str):
        return True  # formats only constrain strings
    if not _DATE_TIME_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checks("date-time")(is_date_time)
    return checker


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(keyword: Any, expected: Any, instance: Any, default: str) -> str:
    """Return a short message: long enums and long values are abbreviated."""
    if keyword == "enum" and isinstance(expected, list) and len(expected) > _ENUM_SHOWN:
        shown = ", ".join(repr(item) for item in expected[:_ENUM_SHOWN])
        default = f"{instance!r} is not one of {shown}, … ({len(expected)} allowed values)"
    if len(default) > _MESSAGE_MAX:
        default = default[: _MESSAGE_MAX - 1] + "…"
    return default


class BodyValidator:
    """Checks create bodies against `MarketingEventCreateRequestParams`.

    Custom property items (`PropertyValue`) need only `name` and `value`; the other fields keep
    the spec's types and enums.
    """

    def __init__(self) -> None:
        prop = copy.deepcopy(spec_schemas()[_PROPERTY])
        prop["required"] = ["name", "value"]
        schema = resolved_schema(_CREATE, {_PROPERTY: prop})
        self._validator = Draft7Validator(schema, format_checker=_format_checker())

    def errors(self, body: Any) -> list[dict[str, str]]:
        """Return HubSpot `ErrorDetail`s (`message`, `in`) for `body`; empty when it is valid."""
        details: dict[tuple[str, str], dict[str, str]] = {}
        for error in self._validator.iter_errors(body):
            where = _path(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        field = f"{where}.{name}" if where else name
                        details[(field, "required")] = {
                            "message": f"Required field '{name}' is missing",
                            "in": field,
                        }
                continue
            field = where or "body"
            message = _message(
                error.validator, error.validator_value, error.instance, error.message
            )
            details[(field, message)] = {"message": message, "in": field}
        return sorted(details.values(), key=lambda item: item["in"])
