"""The batch upsert (`POST .../events/upsert`): each input checked and upserted on its own.

HubSpot's spec documents a 200 `BatchResponseMarketingEventPublicDefaultResponse` and nothing
about partial failures. Its error-handling guide says batch endpoints answer 207 Multi-Status when
some inputs fail and others succeed, so the fake answers 207 when `errors` is not empty (200 is a
setting, for a client that must take both). An input the spec refuses, or one refused on purpose
(`FaultPlan.refuse`), becomes a `StandardError` in `errors`; the others are upserted by
(identity, externalAccountId, externalEventId) like the PUT route. Results echo the event's
fields but no external ids, as HubSpot's do.
"""

from __future__ import annotations

import random
import time
from typing import Any

from fake_hubspot.auth import Identity
from fake_hubspot.config import BatchConfig
from fake_hubspot.errors import error_body, invalid_message
from fake_hubspot.events import EventStore, iso_utc
from fake_hubspot.validator import BodyValidator

__all__ = ["BatchUpsert", "batch_request_error", "too_large_message"]

_Detail = dict[str, Any]


def too_large_message(limit: int) -> str:
    """Return the 400 message for a batch over `limit` inputs, in HubSpot's batch wording.

    HubSpot's CRM batch reads answer "The maximum number of inputs supported in a batch request
    for property histories is 50. Please reduce the number of items and try again".
    """
    return (
        f"The maximum number of inputs supported in a batch request is {limit}. "
        "Please reduce the number of items and try again"
    )


def batch_request_error(body: Any, max_size: int) -> dict[str, Any] | None:
    """Return the 400 `Error` body for a request that is not a batch within `max_size`, or None.

    `body` is the parsed JSON (or anything else when it did not parse as an object).
    """
    if not isinstance(body, dict) or "inputs" not in body:
        detail = {"message": "Required field 'inputs' is missing", "in": "inputs"}
        return error_body("VALIDATION_ERROR", invalid_message([detail]), [detail])
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        detail = {"message": f"{inputs!r:.80} is not of type 'array'", "in": "inputs"}
        return error_body("VALIDATION_ERROR", invalid_message([detail]), [detail])
    if len(inputs) > max_size:
        detail = {"message": f"{len(inputs)} inputs given, at most {max_size}", "in": "inputs"}
        return error_body("VALIDATION_ERROR", too_large_message(max_size), [detail])
    return None


def _context(item: Any) -> dict[str, list[str]]:
    """Return the external ids an input names (only those that are strings)."""
    if not isinstance(item, dict):
        return {}
    return {
        name: [item[name]]
        for name in ("externalAccountId", "externalEventId")
        if isinstance(item.get(name), str)
    }


def _pointed(detail: _Detail, index: int) -> _Detail:
    where = str(detail.get("in", "body"))
    prefix = f"inputs[{index}]"
    return {**detail, "in": prefix if where == "body" else f"{prefix}.{where}"}


class BatchUpsert:
    """Checks and upserts one batch's inputs and builds the answer (one per request)."""

    def __init__(
        self,
        events: EventStore,
        validator: BodyValidator,
        refused: dict[str, str],
        config: BatchConfig,
    ) -> None:
        self._events = events
        self._validator = validator
        self._refused = refused
        self._config = config

    def answer(self, identity: Identity, inputs: list[Any]) -> tuple[int, dict[str, Any]]:
        """Upsert every acceptable input; return the HTTP status and the batch answer."""
        started = time.time()
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(inputs):
            refusal = self._refusal(item)
            if refusal is not None:
                errors.append(self._standard_error(index, item, *refusal))
                continue
            record = self._events.upsert(identity.name, item)
            results.append(self._events.upsert_response(record))
        if self._config.shuffle:
            random.shuffle(results)
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": iso_utc(started),
            "completedAt": iso_utc(time.time()),
        }
        if not errors:
            return 200, answer
        answer.update(errors=errors, numErrors=len(errors))
        return self._config.error_status, answer

    def _refusal(self, item: Any) -> tuple[str, list[_Detail]] | None:
        """Return the message and `ErrorDetail`s refusing `item` (the spec's, else a planned
        refusal), or None when it is accepted."""
        details: list[_Detail] = self._validator.errors(item)
        if details:
            return invalid_message(details), details
        message = self._refused.get(str(item["externalEventId"]))
        if message is None:
            return None
        return message, [{"message": message, "in": "externalEventId"}]

    def _standard_error(
        self, index: int, item: Any, message: str, details: list[_Detail]
    ) -> dict[str, Any]:
        """Return the `StandardError` for input `index`, pointing at it as configured."""
        pointer = self._config.error_pointer
        context = _context(item) if pointer == "external_id" else {}
        if pointer == "index":
            details = [_pointed(detail, index) for detail in details]
        return {
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": message,
            "context": context,
            "errors": details,
            "links": {},
        }
