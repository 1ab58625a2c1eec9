"""The job schema refuses exactly what HubSpot's spec refuses; stricter checks are warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from eventq.event_warnings import event_warnings
from eventq.schema import JobEnvelope, MarketingEvent, spec_schemas
from fake_hubspot.validator import BodyValidator
from tests.conftest import valid_event
from worker.delivery import _Invalid, decode_envelope


def spec_validator() -> jsonschema.Draft202012Validator:
    schemas = spec_schemas()
    root = {
        "$ref": "#/components/schemas/MarketingEventCreateRequestParams",
        "components": {"schemas": schemas},
    }
    return jsonschema.Draft202012Validator(root)


def test_a_valid_event_serialises_to_a_body_the_spec_accepts() -> None:
    body = MarketingEvent.model_validate(valid_event()).to_hubspot()
    props = body["customProperties"]
    # the spec marks every PropertyValue field required; HubSpot takes name+value (see README)
    body_without_props = {**body, "customProperties": []}
    spec_validator().validate(body_without_props)
    assert props == [{"name": "secret_note", "value": "cp-value-1"}]


def test_datetimes_are_sent_in_utc_with_z() -> None:
    body = MarketingEvent.model_validate(valid_event()).to_hubspot()
    assert body["startDateTime"] == "2027-03-01T09:00:00.000Z"
    assert body["endDateTime"] == "2027-03-01T10:00:00.000Z"


def test_custom_properties_are_always_sent_even_when_none_are_given() -> None:
    event = valid_event()
    del event["customProperties"]
    assert MarketingEvent.model_validate(event).to_hubspot()["customProperties"] == []


@pytest.mark.parametrize(
    "field", ["externalAccountId", "externalEventId", "eventName", "eventOrganizer"]
)
def test_each_required_field_missing_is_named(field: str) -> None:
    event = valid_event()
    del event[field]
    with pytest.raises(ValidationError) as caught:
        MarketingEvent.model_validate(event)
    assert caught.value.errors()[0]["loc"] == (field,)


HINT = (
    "give a date-time with a zone (RFC 3339), e.g. 2026-03-01T18:00:00Z or "
    "2026-03-01T19:00:00+01:00"
)
ZONE = "add Z or +01:00, e.g. 2026-03-01T18:00:00Z"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"startDateTime": "2027-03-01T10:00:00"}, "startDateTime", f"has no time zone; {ZONE}"),
        (
            {"startDateTime": "9999-12-31T23:00:00-23:00"},
            "startDateTime",
            f"cannot be expressed as a UTC time (out of range); {HINT}",
        ),
        ({"endDateTime": "2027-03-01"}, "endDateTime", f"a date without a time or zone; {HINT}"),
        ({"startDateTime": "next tuesday"}, "startDateTime", f"not a date-time; {HINT}"),
        ({"eventName": 42}, "eventName", "string"),
        ({"externalEventId": ""}, "externalEventId", "at least 1"),
        ({"externalEventId": "."}, "externalEventId", "cannot be '.': re-delivery addresses"),
        ({"externalEventId": ".."}, "externalEventId", "cannot be '..'"),
        ({"eventCancelled": "maybe"}, "eventCancelled", "boolean"),
        ({"eventUrl": 7}, "eventUrl", "string"),
        ({"customProperties": {"name": "a"}}, "customProperties", "list"),
        ({"customProperties": [{"name": "a"}]}, "customProperties.0.value", "required"),
        (
            {"customProperties": [{"name": "a", "value": "b", "source": "NOPE"}]},
            "customProperties.0.source",
            "property sources",
        ),
        (
            {"customProperties": [{"name": "a", "value": "b", "dataSensitivity": "secret"}]},
            "customProperties.0.dataSensitivity",
            "'high', 'none' or 'standard'",
        ),
        (
            {"customProperties": [{"name": "a", "value": "b", "updatedByUserId": 2**31}]},
            "customProperties.0.updatedByUserId",
            "less than 2147483648",
        ),
        (
            {"customProperties": [{"name": "a", "value": "b", "timestamp": 2**63}]},
            "customProperties.0.timestamp",
            "less than 9223372036854775808",
        ),
    ],
)
def test_what_the_spec_refuses_is_refused_naming_the_field_and_the_problem(
    changes: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        MarketingEvent.model_validate(valid_event(**changes))
    error = caught.value.errors()[0]
    assert ".".join(str(p) for p in error["loc"]) == field
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"eventUrl": "testURL"}, "eventUrl", "not an http(s) URL"),
        ({"endDateTime": "2027-03-01T08:00:00Z"}, "endDateTime", "before startDateTime"),
        ({"eventName": "   "}, "eventName", "is blank"),
        ({"externalEventId": " evt-1"}, "externalEventId", "leading or trailing spaces"),
        ({"externalEventId": "x" * 300}, "externalEventId", "longer than 256"),
        ({"eventDescription": "x" * 70_000}, "eventDescription", "longer than 65536"),
        ({"colour": "red"}, "colour", "not a field of HubSpot's create body"),
        (
            {"customProperties": [{"name": "n", "value": "v", "shade": 1}]},
            "customProperties.0.shade",
            "not a field",
        ),
        ({"customProperties": [{"name": "", "value": "v"}]}, "customProperties.0.name", "blank"),
        (
            {"customProperties": [{"name": f"p{i}", "value": "v"} for i in range(501)]},
            "customProperties",
            "more than 500 items",
        ),
    ],
)
def test_stricter_checks_of_ours_are_warnings_and_the_body_stays_valid_for_hubspot(
    changes: dict[str, object], field: str, words: str
) -> None:
    # Given an event HubSpot's spec accepts but eventq advises against
    raw = valid_event(**changes)
    # When it is validated
    event = MarketingEvent.model_validate(raw)
    found = event_warnings(event, raw)
    # Then it is accepted with one warning naming the field, and its body passes the spec
    assert [(w.field, words in w.message) for w in found] == [(field, True)]
    assert BodyValidator().errors(event.to_hubspot()) == []


def test_an_unknown_field_is_left_out_of_the_body_sent() -> None:
    body = MarketingEvent.model_validate(
        valid_event(colour="red", customProperties=[{"name": "n", "value": "v", "shade": 1}])
    ).to_hubspot()
    assert "colour" not in body
    assert body["customProperties"] == [{"name": "n", "value": "v"}]


def test_a_valid_event_has_no_warnings() -> None:
    raw = valid_event()
    assert event_warnings(MarketingEvent.model_validate(raw), raw) == []


def test_masked_substrings_of_the_spec_are_accepted_and_sent() -> None:
    masked = {"substrings": [{"start": 0, "end": 4}]}
    prop = {"name": "n", "value": "secret", "maskedSubstrings": masked}
    body = MarketingEvent.model_validate(valid_event(customProperties=[prop])).to_hubspot()
    assert body["customProperties"][0]["maskedSubstrings"] == masked
    assert BodyValidator().errors(body) == []


EXAMPLES = json.loads((Path(__file__).parents[1] / "data/hubspot_example_bodies.json").read_text())


@pytest.mark.parametrize(
    "example", EXAMPLES["examples"], ids=[e["source"][:60] for e in EXAMPLES["examples"]]
)
def test_every_example_body_hubspot_publishes_is_accepted_and_sent_valid(
    example: dict[str, Any],
) -> None:
    # Given a create body from HubSpot's docs
    body = example["body"]
    # When the producer validates it, Then it is accepted and the body sent passes the spec
    event = MarketingEvent.model_validate(body)
    assert BodyValidator().errors(event.to_hubspot()) == []
    assert event.to_hubspot()["externalEventId"] == body["externalEventId"]


def test_the_example_file_holds_the_guides_test_url_body() -> None:
    urls = [e["body"].get("eventUrl") for e in EXAMPLES["examples"]]
    assert "testURL" in urls
    assert len(EXAMPLES["examples"]) >= 5


def test_the_envelope_accepts_a_bare_event_with_defaults() -> None:
    envelope = JobEnvelope.model_validate({"event": valid_event()})
    assert envelope.attempt == 1
    assert envelope.source == "raw"
    assert json.loads(envelope.model_dump_json())["firstEnqueuedAt"].endswith("Z")


def test_the_summary_holds_account_id_and_name_but_no_custom_property_values() -> None:
    envelope = JobEnvelope.model_validate({"event": valid_event(7)})
    assert envelope.summary() == "acct-1/evt-7 'Webinar 7' attempt 1"
    assert "cp-value" not in envelope.summary()


@pytest.mark.parametrize("job_id", ["order-42.v2", "0f3c", "A_b-c.d", "x" * 128])
def test_a_job_id_of_the_documented_form_is_accepted(job_id: str) -> None:
    assert JobEnvelope.model_validate({"jobId": job_id, "event": valid_event()}).jobId == job_id


@pytest.mark.parametrize("job_id", ["a:history", "*", "..", ".a", "x" * 129, "é", "a b", "a\n"])
def test_a_job_id_that_could_shape_a_key_name_is_refused_naming_the_field(job_id: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobEnvelope.model_validate({"jobId": job_id, "event": valid_event()})
    assert raised.value.errors()[0]["loc"] == ("jobId",)


def test_an_invalid_raw_message_with_a_malformed_job_id_is_recorded_under_the_task_id() -> None:
    with pytest.raises(_Invalid) as raised:
        decode_envelope({"jobId": "x:history", "event": valid_event()}, "task-1")
    assert raised.value.job_id == "task-1"
    with pytest.raises(_Invalid) as raised:
        decode_envelope({"jobId": "x:history", "event": valid_event()}, "task:1")
    assert len(raised.value.job_id) == 32


def test_a_raw_envelopes_enqueue_time_without_a_zone_says_how_to_add_one() -> None:
    with pytest.raises(ValidationError) as caught:
        JobEnvelope.model_validate(
            {"event": valid_event(), "firstEnqueuedAt": "2026-03-01T18:00:00"}
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("firstEnqueuedAt",)
    assert (
        error["msg"] == "Value error, has no time zone; add Z or +01:00, e.g. 2026-03-01T18:00:00Z"
    )
