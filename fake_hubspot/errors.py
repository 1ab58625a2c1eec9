"""HubSpot-shaped error bodies: the `Error` schema, OAuth errors and 429 rate-limit bodies."""

from __future__ import annotations

import uuid
from typing import Any

__all__ = [
    "category_for_status",
    "correlation_id",
    "error_body",
    "invalid_message",
    "missing_scope_body",
    "oauth_error_body",
    "rate_limit_body",
]

_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    423: "LOCKED",
    429: "RATE_LIMITS",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}

_SCOPES_URL = "https://developers.hubspot.com/scopes"


def correlation_id() -> str:
    """Return a fresh correlation id (a UUID4), as HubSpot puts in every error."""
    return str(uuid.uuid4())


def category_for_status(status: int) -> str:
    """Return the HubSpot error category that fits an HTTP status."""
    if status in _CATEGORIES:
        return _CATEGORIES[status]
    return "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"


def error_body(
    category: str, message: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return an `Error` body: status, message, correlationId, category and optional errors."""
    body: dict[str, Any] = {
        "status": "error",
        "message": message,
        "correlationId": correlation_id(),
        "category": category,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def invalid_message(details: list[dict[str, Any]]) -> str:
    """Return the message of a validation failure: the first `ErrorDetail` and how many more."""
    first = details[0]
    message = f"Invalid input JSON: {first.get('in', 'body')}: {first['message']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return message


def missing_scope_body(scope: str) -> dict[str, Any]:
    """Return the 403 body HubSpot sends when the token lacks `scope`."""
    return error_body(
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. "
        f"Read more about required scopes here: {_SCOPES_URL}.",
        [
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": [scope]},
            }
        ],
    )


def rate_limit_body(policy: str, group: str) -> dict[str, Any]:
    """Return the 429 body for `policy` (`TEN_SECONDLY_ROLLING` or `DAILY`)."""
    limit = "ten_secondly_rolling" if policy == "TEN_SECONDLY_ROLLING" else "daily"
    return {
        "status": "error",
        "message": f"You have reached your {limit} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "groupName": group,
    }


def oauth_error_body(status: str, error: str, message: str) -> dict[str, Any]:
    """Return an OAuth token-endpoint error with HubSpot's and RFC 6749's fields."""
    return {
        "error": error,
        "error_description": message,
        "status": status,
        "message": message,
        "correlationId": correlation_id(),
    }
