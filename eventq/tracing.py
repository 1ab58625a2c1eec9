"""Traces, optional (`pip install hubspot-event-queue[otel]`): a job continues its producer's trace.

The producer's current trace context (W3C `traceparent`/`tracestate`, through OpenTelemetry's
configured propagators) rides in the job envelope's `traceContext`; the worker's span of each
attempt (`eventq.attempt`) is its child, and the HubSpot request's span (aiohttp client
instrumentation, `worker.hubspot_client`) the attempt's. Attributes: job id, attempt number,
outcome, HTTP status, HubSpot correlationId; never a payload value, a token or a key.

Without the `otel` extra every function here does nothing. With it, spans are only recorded
once the process configures an OpenTelemetry SDK tracer provider with an exporter (for example
by running under `opentelemetry-instrument`); until then the API's provider records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context, propagate, trace
except ImportError:  # the `otel` extra is not installed: no traces
    context = propagate = trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from eventq.schema import JobEnvelope

__all__ = [
    "ATTEMPT_SPAN",
    "attached",
    "attempt_span",
    "carrier_from_headers",
    "current_carrier",
    "record_attempt",
]

ATTEMPT_SPAN = "eventq.attempt"
_tracer: Any = None if trace is None else trace.get_tracer("eventq")


def current_carrier() -> dict[str, str] | None:
    """Return the current trace context as envelope text (None: no trace, or no OpenTelemetry)."""
    if propagate is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def carrier_from_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """Return the trace context an incoming request's headers carry, as envelope text."""
    if propagate is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=propagate.extract(headers))
    return carrier or None


@contextmanager
def attached(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context in `carrier` current for the block (a thread a request handed its
    work to: thread pools do not carry the caller's context)."""
    if context is None or not carrier:
        yield
        return
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


@contextmanager
def attempt_span(envelope: JobEnvelope) -> Iterator[None]:
    """Run the block in the attempt's span, a child of the producer's trace when it sent one."""
    if trace is None:
        yield
        return
    parent = propagate.extract(envelope.traceContext or {})
    attributes = {"eventq.job_id": envelope.jobId, "eventq.attempt": envelope.attempt}
    kind = trace.SpanKind.CONSUMER
    with _tracer.start_as_current_span(
        ATTEMPT_SPAN, context=parent, kind=kind, attributes=attributes
    ):
        yield


def record_attempt(outcome: str, http_status: int | None, correlation_id: str | None) -> None:
    """Set the attempt's outcome, HubSpot's status and correlationId on the current span."""
    if trace is None:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("eventq.outcome", outcome)
    if http_status is not None:
        span.set_attribute("http.response.status_code", http_status)
    if correlation_id:
        span.set_attribute("hubspot.correlation_id", correlation_id)
