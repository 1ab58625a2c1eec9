"""The job schema follows HubSpot's spec and rejects what HubSpot would reject."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from eventq.schema import JobEnvelope, MarketingEvent, spec_schemas
from tests.conftest import valid_event


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


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"startDateTime": "2027-03-01T10:00:00"}, "startDateTime", "timezone"),
        ({"endDateTime": "2027-03-01T08:00:00Z"}, None, "before startDateTime"),
        ({"unknown": 1}, "unknown", "Extra inputs"),
        ({"eventName": 42}, "eventName", "string"),
        ({"eventName": "   "}, "eventName", "at least 1"),
        ({"externalEventId": "x" * 300}, "externalEventId", "at most 256"),
        ({"eventCancelled": "maybe"}, "eventCancelled", "boolean"),
        ({"customProperties": [{"name": "a"}]}, "customProperties.0.value", "required"),
        (
            {"customProperties": [{"name": "a", "value": "b", "source": "NOPE"}]},
            "customProperties.0.source",
            "property sources",
        ),
        ({"eventUrl": "not a url"}, "eventUrl", "pattern"),
    ],
)
def test_bad_input_names_the_field_and_the_problem(
    changes: dict[str, object], field: str | None, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        MarketingEvent.model_validate(valid_event(**changes))
    error = caught.value.errors()[0]
    if field is not None:
        assert ".".join(str(p) for p in error["loc"]) == field
    assert words in error["msg"]


def test_the_envelope_accepts_a_bare_event_with_defaults() -> None:
    envelope = JobEnvelope.model_validate({"event": valid_event()})
    assert envelope.attempt == 1
    assert envelope.source == "raw"
    assert json.loads(envelope.model_dump_json())["firstEnqueuedAt"].endswith("Z")


def test_the_summary_holds_account_id_and_name_but_no_custom_property_values() -> None:
    envelope = JobEnvelope.model_validate({"event": valid_event(7)})
    assert envelope.summary() == "acct-1/evt-7 'Webinar 7' attempt 1"
    assert "cp-value" not in envelope.summary()
