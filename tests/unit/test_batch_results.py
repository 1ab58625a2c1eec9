"""A batch upsert's answer tied to its inputs: matched by unique content, failed where an error
names the input, unknown otherwise; and the 400 that says a batch is too large."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from worker.attempts import BatchAnswer, BatchError, HttpFailure
from worker.batch_results import (
    BatchTooLarge,
    Failed,
    InputOutcome,
    Matched,
    Unknown,
    is_batch_too_large,
    match_results,
)


def event(event_id: str, account: str = "acct-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalAccountId": account,
        "externalEventId": event_id,
        "eventName": f"Webinar {event_id}",
        "eventOrganizer": "Acme",
        "eventType": "WEBINAR",
        "startDateTime": "2030-05-01T10:00:00Z",
        "customProperties": [{"name": "campaign", "value": "spring"}],
    }
    body.update(fields)
    return body


def echo(body: dict[str, Any], object_id: str) -> dict[str, Any]:
    """HubSpot's result for `body`: its fields without external ids, full custom properties."""
    result = {k: v for k, v in body.items() if not k.startswith("external")}
    result["customProperties"] = [
        {**item, "source": "API", "timestamp": 1} for item in body.get("customProperties", [])
    ]
    result.update(id=object_id, objectId=object_id, eventCancelled=False, eventCompleted=False)
    return result


def error(
    *, events: tuple[str, ...] = (), accounts: tuple[str, ...] = (), at: str = ""
) -> BatchError:
    context = {"externalEventId": events} if events else {}
    if accounts:
        context["externalAccountId"] = accounts
    details = ({"message": "bad", "in": at},) if at else ({"message": "bad", "in": "eventName"},)
    return BatchError("refused", "VALIDATION_ERROR", context, details)


def answer(results: list[dict[str, Any]], errors: Sequence[BatchError] = ()) -> BatchAnswer:
    return BatchAnswer(207 if errors else 200, tuple(results), tuple(errors), len(errors))


A, B, C = event("a"), event("b"), event("c")
TWIN_OF_A = event("a2", eventName=A["eventName"])  # same content as A, other external ids
A_AGAIN = dict(A)  # the same event twice in one batch
A_RENAMED = event("a", eventName="Renamed")  # the same event, changed, twice in one batch
A_OTHER_ACCOUNT = event("a", account="acct-2")  # same event id under another account
A_TWIN_MORE_PROPS = event(
    "a3",
    eventName=A["eventName"],
    customProperties=[{"name": "campaign", "value": "autumn"}],
)
REFUSAL_A = error(events=("a",))

CASES: list[tuple[str, list[dict[str, Any]], BatchAnswer, list[InputOutcome]]] = [
    (
        "each result in order",
        [A, B, C],
        answer([echo(A, "1"), echo(B, "2"), echo(C, "3")]),
        [Matched("1"), Matched("2"), Matched("3")],
    ),
    (
        "results reordered",
        [A, B, C],
        answer([echo(C, "3"), echo(A, "1"), echo(B, "2")]),
        [Matched("1"), Matched("2"), Matched("3")],
    ),
    (
        "a missing result",
        [A, B, C],
        answer([echo(C, "3"), echo(A, "1")]),
        [Matched("1"), Unknown("no result matches it and no error names it"), Matched("3")],
    ),
    (
        "an extra result that matches no input is ignored",
        [A, B],
        answer([echo(A, "1"), echo(B, "2"), echo(C, "3")]),
        [Matched("1"), Matched("2")],
    ),
    (
        "identical content under two external ids: neither gets an id",
        [A, TWIN_OF_A, B],
        answer([echo(TWIN_OF_A, "9"), echo(A, "1"), echo(B, "2")]),
        [
            Unknown("a result matching it could belong to another input with the same content"),
            Unknown("a result matching it could belong to another input with the same content"),
            Matched("2"),
        ],
    ),
    (
        "identical content told apart by custom properties",
        [A, A_TWIN_MORE_PROPS],
        answer([echo(A_TWIN_MORE_PROPS, "7"), echo(A, "1")]),
        [Matched("1"), Matched("7")],
    ),
    (
        "the same event twice with the same body: both get its one id",
        [A, A_AGAIN],
        answer([echo(A, "1"), echo(A_AGAIN, "1")]),
        [Matched("1"), Matched("1")],
    ),
    (
        "the same event twice, changed: each body's result, one id",
        [A, A_RENAMED],
        answer([echo(A_RENAMED, "1"), echo(A, "1")]),
        [Matched("1"), Matched("1")],
    ),
    (
        "the same event twice answered with two different ids",
        [A, A_AGAIN],
        answer([echo(A, "1"), echo(A_AGAIN, "5")]),
        [Unknown("results with different ids match it")] * 2,
    ),
    (
        "the same event id under two accounts, same content: unknown",
        [A, A_OTHER_ACCOUNT],
        answer([echo(A, "1"), echo(A_OTHER_ACCOUNT, "2")]),
        [Unknown("a result matching it could belong to another input with the same content")] * 2,
    ),
    (
        "an error naming the input by external id",
        [A, B],
        answer([echo(B, "2")], [REFUSAL_A]),
        [Failed(REFUSAL_A), Matched("2")],
    ),
    (
        "an error naming the input by index",
        [A, B],
        answer([echo(A, "1")], [error(at="inputs[1].startDateTime")]),
        [Matched("1"), Failed(error(at="inputs[1].startDateTime"))],
    ),
    (
        "an error whose index and external id agree",
        [A, B],
        answer([echo(B, "2")], [error(events=("a",), at="inputs[0]")]),
        [Failed(error(events=("a",), at="inputs[0]")), Matched("2")],
    ),
    (
        "an error whose index and external id disagree names nobody",
        [A, B],
        answer([], [error(events=("a",), at="inputs[1]")]),
        [Unknown("no result matches it and no error names it")] * 2,
    ),
    (
        "an error without a usable pointer",
        [A, B, C],
        answer([echo(A, "1"), echo(C, "3")], [error()]),
        [Matched("1"), Unknown("no result matches it and no error names it"), Matched("3")],
    ),
    (
        "an error naming an external id not in the batch",
        [A, B],
        answer([echo(A, "1")], [error(events=("zzz",))]),
        [Matched("1"), Unknown("no result matches it and no error names it")],
    ),
    (
        "an error naming an index out of range",
        [A, B],
        answer([echo(A, "1")], [error(at="inputs[7].eventName")]),
        [Matched("1"), Unknown("no result matches it and no error names it")],
    ),
    (
        "an error naming an event id two accounts share, without the account",
        [A, A_OTHER_ACCOUNT],
        answer([], [REFUSAL_A]),
        [Unknown("no result matches it and no error names it")] * 2,
    ),
    (
        "an error naming the event id and the account",
        [A, A_OTHER_ACCOUNT],
        answer([], [error(events=("a",), accounts=("acct-2",))]),
        [
            Unknown("no result matches it and no error names it"),
            Failed(error(events=("a",), accounts=("acct-2",))),
        ],
    ),
    (
        "an error and a result both claiming the input",
        [A, B],
        answer([echo(A, "1"), echo(B, "2")], [REFUSAL_A]),
        [Unknown("an error names it but a result matches it too"), Matched("2")],
    ),
    (
        "a result without an id",
        [A, B],
        answer([{k: v for k, v in echo(A, "1").items() if k not in ("id", "objectId")}]),
        [Unknown("no result matches it and no error names it")] * 2,
    ),
    (
        "dates compared as instants, custom properties a subset when the content is unique",
        [event("a", startDateTime="2030-05-01T12:00:00+02:00")],
        answer(
            [
                {
                    **echo(event("a", startDateTime="2030-05-01T10:00:00.000Z"), "1"),
                    "customProperties": [],
                }
            ]
        ),
        [Matched("1")],
    ),
    (
        "an echo with a changed field matches nothing",
        [A],
        answer([{**echo(A, "1"), "eventDescription": "left by an earlier write"}]),
        [Unknown("no result matches it and no error names it")],
    ),
    (
        "an input without external ids",
        [{k: v for k, v in A.items() if k != "externalEventId"}],
        answer([echo(A, "1")]),
        [Unknown("it has no external ids")],
    ),
    ("an empty batch", [], answer([]), []),
]


@pytest.mark.parametrize(
    ("inputs", "batch", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_input_is_matched_failed_or_unknown_never_guessed(
    inputs: list[dict[str, Any]], batch: BatchAnswer, expected: list[InputOutcome]
) -> None:
    assert match_results(inputs, batch) == expected


def test_a_full_batch_answered_in_reverse_order_gives_every_input_its_own_id() -> None:
    # Given 100 distinct events and their results in reverse order
    inputs = [event(f"ev-{n}") for n in range(100)]
    results = [echo(body, str(1000 + n)) for n, body in enumerate(inputs)][::-1]
    # When they are matched, then each input has the id its own result carried
    outcomes = match_results(inputs, answer(results))
    assert outcomes == [Matched(str(1000 + n)) for n in range(100)]


TOO_LARGE = [
    (
        "the fake's wording",
        400,
        "The maximum number of inputs supported in a batch request is 100. "
        "Please reduce the number of items and try again",
        BatchTooLarge(100),
    ),
    (
        "HubSpot's wording for property histories",
        400,
        "The maximum number of inputs supported in a batch request for property histories is 50. "
        "Please reduce the number of items and try again",
        BatchTooLarge(50),
    ),
    ("given then max", 400, "Batch input limit exceeded: 101 given, max 100", BatchTooLarge(100)),
    ("no number", 400, "Too many inputs in this batch", BatchTooLarge(None)),
    ("a 413", 413, "Request entity too large", BatchTooLarge(None)),
    ("a field's maximum", 400, "inputs[3].eventName: exceeds maximum length of 256", None),
    ("a plain validation error", 400, "Invalid input JSON: eventName is required", None),
    ("a 429 about limits", 429, "You have reached your ten_secondly_rolling limit.", None),
    ("a 500", 500, "batch maximum 100", None),
]


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [case[1:] for case in TOO_LARGE],
    ids=[case[0] for case in TOO_LARGE],
)
def test_a_400_that_names_the_batch_size_is_recognised_with_its_limit(
    status: int, message: str, expected: BatchTooLarge | None
) -> None:
    failure = HttpFailure(status, {"status": "error", "message": message})
    assert is_batch_too_large(failure) == expected


def test_the_limit_may_be_stated_in_an_error_detail_only() -> None:
    body = {
        "message": "Invalid input",
        "errors": [{"message": "The maximum number of inputs is 25", "in": "inputs"}],
    }
    assert is_batch_too_large(HttpFailure(400, body)) == BatchTooLarge(25)
