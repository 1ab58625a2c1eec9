"""Reading events from a file for `eventq enqueue`: a JSON object, a JSON array or JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["FileItem", "read_items"]


@dataclass(frozen=True)
class FileItem:
    """One item of the input: its place (`line 3` or `item 3`) and its value or parse error."""

    place: str
    value: Any = None
    error: str | None = None


def read_items(text: str) -> Iterator[FileItem]:
    """Yield the items of `text`, whichever of the three shapes it has.

    An empty input yields one error item; a line that is not JSON yields an error item and the
    other lines still count.
    """
    stripped = text.strip()
    if not stripped:
        yield FileItem(
            "input", error="the input is empty: expected a JSON object, array or JSON Lines"
        )
        return
    if stripped[0] in "[{":
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError:
            whole = None  # not one JSON document: read it as JSON Lines
        else:
            if isinstance(whole, list):
                yield from (FileItem(f"item {i}", v) for i, v in enumerate(whole, start=1))
            else:
                yield FileItem("item 1", whole)
            return
    yield from _json_lines(text)


def _json_lines(text: str) -> Iterator[FileItem]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield FileItem(f"line {number}", json.loads(line))
        except json.JSONDecodeError as error:
            yield FileItem(
                f"line {number}", error=f"not valid JSON ({error.msg} at column {error.colno})"
            )
