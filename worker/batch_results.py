"""What a batch upsert's answer says about each of its inputs: matched, failed or unknown.

HubSpot's batch answer lists `results` (the upserted events, in no promised order) and `errors`
(refused inputs), and neither carries the inputs' external ids. So a result is tied to an input
by what HubSpot echoes of it (name, organizer, type, URL, description, dates, flags, custom
properties), and only where that content is unique in the batch; an error is tied to an input
only where it names it (external ids in its `context`, or `inputs[N]` in an `ErrorDetail`'s
`in`). Whatever cannot be told for certain is `Unknown`: the worker re-sends those inputs one by
one with `PUT .../events/{externalEventId}`, which is idempotent. An object id is never attached
to an input on a guess: when two inputs with different external ids could own a result, both
are unknown.

The limit of the method: it trusts that HubSpot echoes an input's fields as they were sent (dates
are compared as instants, custom properties as name/value pairs). An echo that differs (say,
fields an earlier write left on the event) makes its input unknown, never matched elsewhere,
unless the changed echo is exactly the content of another input of the same batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from worker.attempts import BatchAnswer, BatchError, HttpFailure

__all__ = [
    "BatchTooLarge",
    "Failed",
    "InputOutcome",
    "Matched",
    "Unknown",
    "is_batch_too_large",
    "match_results",
]

# What HubSpot's MarketingEventPublicDefaultResponse echoes of a MarketingEventCreateRequestParams
_ECHOED = ("eventName", "eventOrganizer", "eventType", "eventUrl", "eventDescription")
_DATES = ("startDateTime", "endDateTime")
_FLAGS = ("eventCancelled", "eventCompleted")
_INDEX_RE = re.compile(r"^inputs\[(\d+)\]")

_Key = tuple[str, str]  # (externalAccountId, externalEventId)


@dataclass(frozen=True)
class Matched:
    """The input was upserted: `object_id` is its event's id, from the one result that is its."""

    object_id: str


@dataclass(frozen=True)
class Failed:
    """HubSpot refused the input: `error` is the `errors` entry that names it."""

    error: BatchError


@dataclass(frozen=True)
class Unknown:
    """The answer does not tell what happened to the input; re-send it alone (PUT)."""

    reason: str


InputOutcome = Matched | Failed | Unknown


def match_results(inputs: Sequence[Mapping[str, Any]], answer: BatchAnswer) -> list[InputOutcome]:
    """Return one outcome per input, in the inputs' order, for a 200/207 batch answer."""
    keys = [_key(item) for item in inputs]
    cores: dict[Any, list[int]] = {}
    for index, item in enumerate(inputs):
        cores.setdefault(_hashable(_core(item)), []).append(index)
    candidates: list[set[str]] = [set() for _ in inputs]
    ambiguous: set[int] = set()
    for result in answer.results:
        object_id = _object_id(result)
        if object_id is None:
            continue  # it proves an upsert but gives no id: its input is re-sent alone
        owners = _owners(result, inputs, keys, cores)
        if len({keys[i] for i in owners}) > 1:
            ambiguous.update(owners)
            continue
        for index in owners:
            candidates[index].add(object_id)
    failed = _failed(answer.errors, keys)
    return [
        _outcome(candidates[i], i in ambiguous, failed.get(i), keys[i]) for i in range(len(inputs))
    ]


def _outcome(
    ids: set[str], ambiguous: bool, error: BatchError | None, key: _Key | None
) -> InputOutcome:
    if error is not None:
        if ids or ambiguous:
            return Unknown("an error names it but a result matches it too")
        return Failed(error)
    if ambiguous:
        return Unknown("a result matching it could belong to another input with the same content")
    if key is None:
        return Unknown("it has no external ids")
    if len(ids) == 1:
        return Matched(next(iter(ids)))
    if ids:
        return Unknown("results with different ids match it")
    return Unknown("no result matches it and no error names it")


def _key(item: Mapping[str, Any]) -> _Key | None:
    account, event = item.get("externalAccountId"), item.get("externalEventId")
    if isinstance(account, str) and isinstance(event, str):
        return account, event
    return None


def _object_id(result: Mapping[str, Any]) -> str | None:
    found = result.get("objectId") or result.get("id")
    return None if found is None else str(found)


def _owners(
    result: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    keys: list[_Key | None],
    cores: dict[Any, list[int]],
) -> list[int]:
    """Return the inputs `result` may belong to: those with its echoed fields; where they are
    several events, only those whose custom properties are the result's too."""
    owners = cores.get(_hashable(_core(result)), [])
    if len({keys[i] for i in owners}) > 1:
        properties = _properties(result)
        owners = [i for i in owners if _properties(inputs[i]) == properties]
    return owners


def _core(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """Return the fields HubSpot echoes, normalised: dates as instants, flags default False."""
    echoed = tuple(event.get(name) for name in _ECHOED)
    dates = tuple(_instant(event.get(name)) for name in _DATES)
    flags = tuple(bool(event.get(name, False)) for name in _FLAGS)
    return echoed + dates + flags


def _hashable(core: tuple[Any, ...]) -> Any:
    """Return `core` as a dictionary key (a value of an unexpected type by its repr)."""
    try:
        hash(core)
    except TypeError:
        return repr(core)
    return core


def _instant(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone(UTC)


def _properties(event: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    items = event.get("customProperties")
    if not isinstance(items, list):
        return frozenset()
    return frozenset(
        (str(item.get("name")), str(item.get("value"))) for item in items if isinstance(item, dict)
    )


def _failed(errors: Sequence[BatchError], keys: list[_Key | None]) -> dict[int, BatchError]:
    """Return the inputs each error names (the first error that names an input wins)."""
    failed: dict[int, BatchError] = {}
    for error in errors:
        for index in _named(error, keys):
            failed.setdefault(index, error)
    return failed


def _named(error: BatchError, keys: list[_Key | None]) -> set[int]:
    """Return the inputs `error` names; empty when it names none, or names them unclearly."""
    by_context = _named_by_context(error, keys)
    by_index = _named_by_index(error, len(keys))
    if by_context is None or by_index is None:
        return set()
    if by_context and by_index and by_context != by_index:
        return set()
    return by_context or by_index


def _named_by_context(error: BatchError, keys: list[_Key | None]) -> set[int] | None:
    """Return the inputs the error's `context` names by external ids (None: unclear)."""
    events = error.context.get("externalEventId", ())
    accounts = set(error.context.get("externalAccountId", ()))
    named: set[int] = set()
    for event in events:
        found = {
            i
            for i, key in enumerate(keys)
            if key is not None and key[1] == event and (not accounts or key[0] in accounts)
        }
        if not found or len({keys[i] for i in found}) > 1:
            return None
        named |= found
    return named


def _named_by_index(error: BatchError, size: int) -> set[int] | None:
    """Return the inputs the error's details name as `inputs[N]` (None: one out of range)."""
    named: set[int] = set()
    for detail in error.details:
        match = _INDEX_RE.match(str(detail.get("in", "")))
        if match is None:
            continue
        index = int(match.group(1))
        if index >= size:
            return None
        named.add(index)
    return named


@dataclass(frozen=True)
class BatchTooLarge:
    """HubSpot refused the batch for its size; `limit` is the maximum it stated, if any."""

    limit: int | None


# a field's own limit ("inputs[3].eventName: exceeds maximum length") must not read as the batch's
_SIZE_PHRASES = ("number of inputs", "too many inputs", "number of items")
_LIMIT_WORDS = ("maximum", "limit", "too many", "too large", "exceed", "at most")
_LIMIT_RE = re.compile(
    r"(?:maximum|max\b|at most|up to|no more than|limit of|limit is)\D{0,80}?(\d+)", re.IGNORECASE
)


def is_batch_too_large(failure: HttpFailure) -> BatchTooLarge | None:
    """Return BatchTooLarge when HubSpot refused a batch for the number of its inputs, else None.

    That is a 400 whose message (or an `ErrorDetail`'s) speaks of the batch's inputs and a
    limit, e.g. "The maximum number of inputs supported in a batch request is 100. Please reduce
    the number of items and try again" (limit 100), or a 413 (limit unknown: the body's size).
    The worker then halves the batch (or cuts it to the limit).
    """
    if failure.status == 413:
        return BatchTooLarge(None)
    if failure.status != 400:
        return None
    for text in [failure.message, *_detail_messages(failure.body)]:
        lowered = text.lower()
        sized = any(phrase in lowered for phrase in _SIZE_PHRASES)
        if sized or ("batch" in lowered and any(word in lowered for word in _LIMIT_WORDS)):
            match = _LIMIT_RE.search(text)
            return BatchTooLarge(int(match.group(1)) if match else None)
    return None


def _detail_messages(body: Mapping[str, Any]) -> list[str]:
    details = body.get("errors")
    if not isinstance(details, list):
        return []
    return [str(item.get("message", "")) for item in details if isinstance(item, dict)]
