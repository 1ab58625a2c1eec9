"""Everything that puts jobs in: the Python API, the HTTP service, the CLI and DLQ replay."""

from producers.enqueue import (
    EnqueueResult,
    FieldError,
    FieldWarning,
    Producer,
    RejectedEvent,
    enqueue_event,
    enqueue_events,
)

__all__ = [
    "EnqueueResult",
    "FieldError",
    "FieldWarning",
    "Producer",
    "RejectedEvent",
    "enqueue_event",
    "enqueue_events",
]
