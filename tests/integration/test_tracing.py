"""Traces end to end, in this process so the SDK's in-memory exporter sees every span: the HTTP
service (a thread), then one attempt on a worker's own delivery runtime (`worker.handoff`), the
fake HubSpot over loopback, the real Redis."""

from __future__ import annotations

import uuid

import pytest
import redis
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventq.jobs import stored_envelopes
from eventq.keys import Keys
from eventq.messaging import make_celery
from eventq.tracing import ATTEMPT_SPAN
from fake_hubspot.control import FakeHubSpot
from tests.conftest import TOKEN, Stack, valid_event
from tests.integration.http_support import PRODUCER_KEY, Api
from worker.handoff import Handoff

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracer() -> trace.Tracer:
    """The SDK, recording into `EXPORTER` (the global provider can be set once per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    return provider.get_tracer("test-producer")


def test_the_attempt_and_hubspot_spans_continue_the_producers_trace_without_secrets(
    tracer: trace.Tracer, api: Api, stack: Stack, fake: FakeHubSpot, redis_client: redis.Redis
) -> None:
    EXPORTER.clear()
    # Given a producer's request handler that enqueues over HTTP inside its trace
    secret_value = f"cp-secret-{uuid.uuid4().hex}"
    event = valid_event(1, customProperties=[{"name": "note", "value": secret_value}])
    with tracer.start_as_current_span("producer handler") as root:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        answer = api.post("/v1/events", json=event, headers=headers)
    assert answer.status_code == 202
    job_id = answer.json()["jobId"]
    [envelope] = stored_envelopes(redis_client, Keys(stack.settings.key_prefix), [job_id])
    assert envelope.traceContext is not None
    # When a worker's delivery runtime runs the job's attempt (what its Celery task hands it)
    app = make_celery(stack.settings)
    handoff = Handoff(stack.settings, app)
    try:
        outcome = handoff.call(handoff.attempt(envelope.model_dump(mode="json"), job_id), 30)
    finally:
        handoff.close()
        app.close()
    assert getattr(outcome, "kind", outcome) == "delivered"
    # Then the attempt's span is a child of the producer's span, in its trace
    spans = EXPORTER.get_finished_spans()
    trace_id = root.get_span_context().trace_id
    [attempt] = [s for s in spans if s.name == ATTEMPT_SPAN]
    assert attempt.context is not None
    assert attempt.context.trace_id == trace_id
    assert attempt.parent is not None
    assert attempt.parent.span_id == root.get_span_context().span_id
    assert attempt.attributes is not None
    assert attempt.attributes["eventq.job_id"] == job_id
    assert attempt.attributes["eventq.attempt"] == 1
    assert attempt.attributes["eventq.outcome"] == "delivered"
    assert attempt.attributes["http.response.status_code"] == 200
    # and HubSpot's request span is the attempt's child, in the same trace
    [request] = [
        s for s in spans if s.parent is not None and s.parent.span_id == attempt.context.span_id
    ]
    assert request.context is not None
    assert request.context.trace_id == trace_id
    assert request.kind == trace.SpanKind.CLIENT
    assert request.attributes is not None
    assert 200 in request.attributes.values()
    # and no span attribute holds a custom property value, the token or an API key
    for span in spans:
        for value in (span.attributes or {}).values():
            text = str(value)
            assert secret_value not in text
            assert TOKEN not in text
            assert PRODUCER_KEY not in text
