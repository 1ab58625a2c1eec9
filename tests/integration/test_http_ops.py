"""Operations routes: /healthz, /readyz, /metrics (Prometheus) and /openapi.json (OpenAPI 3.1)."""

from __future__ import annotations

import pytest
import redis
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from eventq.schema import MarketingEvent
from eventq.settings import Settings
from fake_hubspot.control import FakeHubSpot
from producers.http_models import IngestEvent
from producers.http_service import create_app
from tests.conftest import Stack, valid_event
from tests.integration.helpers import wait_state
from tests.integration.http_support import (
    ADMIN_KEY,
    Api,
    seed_dead_letter,
)


@pytest.fixture
def anonymous(service: str) -> Api:
    """A client of the service sending no key."""
    return Api(service, key=None)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_healthz_and_readyz_answer_without_a_key(anonymous: Api) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "broker": "ok"}}


def test_metrics_count_ingest_and_read_queue_dlq_and_worker_totals(
    stack: Stack, fake: FakeHubSpot, anonymous: Api, redis_client: redis.Redis
) -> None:
    # Given a delivered event, two queued ones, rejections, a scheduled retry and DLQ entries
    producer = Api(anonymous.base_url)
    stack.start_worker()
    delivered = producer.post("/v1/events", json=valid_event("d")).json()["jobId"]
    wait_state(stack, delivered, "delivered")
    stack.stop_workers()
    producer.post("/v1/events/batch", json={"events": [valid_event(1), valid_event(2), {}]})
    producer.post("/v1/events", data=b"{", headers={"Content-Type": "application/json"})
    Api(anonymous.base_url, "wrong").post("/v1/events", json=valid_event())
    redis_client.zadd(f"{stack.settings.key_prefix}:schedule", {"some-job": 1.0})
    seed_dead_letter(stack.settings, {"eventName": "x"})
    seed_dead_letter(stack.settings, valid_event(), reason="rejected", http_status=400)
    # When Prometheus scrapes
    response = anonymous.get("/metrics")
    # Then every figure is there
    assert response.headers["Content-Type"].startswith("text/plain")
    found = samples(response.text)
    queue = stack.env["EVENTQ_QUEUE"]
    assert found[("eventq_http_events_enqueued_total", (("route", "single"),))] == 1
    assert found[("eventq_http_events_enqueued_total", (("route", "batch"),))] == 2
    assert found[("eventq_http_events_rejected_total", (("reason", "validation_failed"),))] == 1
    assert found[("eventq_http_events_rejected_total", (("reason", "malformed_json"),))] == 1
    assert found[("eventq_http_events_rejected_total", (("reason", "unauthorized"),))] == 1
    # (the batch's two events wait in one pack message)
    assert found[("eventq_queue_depth", (("queue", queue),))] == 1
    # the retry schedule's depth is the workers' metric (worker.metrics), exported there only
    assert not any(name == "eventq_retry_schedule_depth" for name, _ in found)
    assert found[("eventq_dlq_entries", (("reason", "invalid"),))] == 1
    assert found[("eventq_dlq_entries", (("reason", "rejected"),))] == 1
    assert found[("eventq_jobs_delivered_total", ())] == 1
    assert found[("eventq_jobs_dead_lettered_total", (("reason", "invalid"),))] == 1
    route = (("method", "POST"), ("route", "/v1/events"), ("status", "202"))
    assert found[("eventq_http_requests_total", route)] == 1


# the README's routes, the audit log and the admin page: the contract, kept by hand on purpose
PROMISED_ROUTES = {
    ("post", "/v1/events"),
    ("post", "/v1/events/batch"),
    ("get", "/v1/jobs/{jobId}"),
    ("get", "/v1/dead-letters"),
    ("get", "/v1/dead-letters/{id}"),
    ("post", "/v1/dead-letters/replay"),
    ("delete", "/v1/dead-letters/{id}"),
    ("get", "/v1/audit"),
    ("get", "/v1/overview"),
    ("post", "/v1/dead-letters/delete"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/admin"),
    ("get", "/admin/"),
    ("get", "/admin/login"),
    ("post", "/admin/login"),
    ("post", "/admin/logout"),
    ("get", "/admin/session"),
    ("get", "/admin/static/admin.js"),
    ("get", "/admin/static/overview.js"),
    ("get", "/admin/static/favicon.svg"),
    ("get", "/admin/static/admin.css"),
}


def test_openapi_is_a_valid_3_1_document_covering_every_route(
    service_settings: Settings, anonymous: Api
) -> None:
    # Given the published document and the application's router
    doc = anonymous.get("/openapi.json").json()
    app = create_app(service_settings)
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    # Then it is valid OpenAPI 3.1, and the document and the router both hold exactly the routes
    # the service promises (written out here: both are built from one route table, so comparing
    # them with each other alone could not catch a route dropped from that table)
    OPENAPI_31_VALIDATOR.validate(doc)
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert doc["openapi"] == "3.1.0"
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == PROMISED_ROUTES
    assert routed == PROMISED_ROUTES


def test_openapi_schemas_are_the_pydantic_models(anonymous: Api) -> None:
    doc = anonymous.get("/openapi.json").json()
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/IngestEvent"}
    published = doc["components"]["schemas"]["IngestEvent"]
    expected = IngestEvent.model_json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs", None)
    assert published == expected
    # the event as HubSpot takes it, and the job's callbackUrl beside it
    assert set(published["properties"]) == {*MarketingEvent.model_fields, "callbackUrl"}
    admin_only = doc["paths"]["/v1/dead-letters"]["get"]
    assert admin_only["security"] == [{"bearerAuth": []}, {"adminSession": []}]
    assert "403" in admin_only["responses"]


def test_an_admin_key_a_wrong_key_and_no_key_all_read_the_metrics_and_schema(
    anonymous: Api,
) -> None:
    # Given an admin key (it opens an admin route) and a key that is refused there
    admin, wrong, anyone = (
        Api(anonymous.base_url, ADMIN_KEY),
        Api(anonymous.base_url, "wrong"),
        Api(anonymous.base_url),
    )
    assert admin.get("/v1/dead-letters").status_code == 200
    assert wrong.get("/v1/dead-letters").status_code == 401
    for caller in (admin, wrong, anyone):
        # When each reads the public routes, Then each gets the real documents
        metrics = caller.get("/metrics")
        assert metrics.status_code == 200
        assert "eventq_http_requests_total" in metrics.text
        schema = caller.get("/openapi.json")
        assert schema.status_code == 200
        assert "/v1/events" in schema.json()["paths"]
