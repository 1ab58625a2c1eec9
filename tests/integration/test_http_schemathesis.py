"""Schemathesis against `/openapi.json`: every route, generated requests, no 5xx, every answer
matches the published schema (status, content type, headers, body)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, __version__, settings
from hypothesis.internal.conjecture.utils import many
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import BaseOpenAPISchema

from tests.conftest import Stack, valid_event
from tests.integration.http_support import (
    ADMIN_KEY,
    keyed_settings,
    running_service,
    seed_dead_letter,
)

schemathesis.experimental.OPEN_API_3_1.enable()

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
MIN_CASES = 500
OPERATIONS = 20  # 18 paths; two of them also take a second method
CASES: Counter[str] = Counter()


def require_a_working_hypothesis_jsonschema() -> None:
    """Fail with the fix when Hypothesis dropped an API that hypothesis-jsonschema 0.23 uses."""
    if not hasattr(many, "more"):
        pytest.fail(
            f"hypothesis {__version__} removed many.more(), which hypothesis-jsonschema (used by "
            "schemathesis to generate bodies) needs: pin hypothesis<=6.170.9"
        )


@pytest.fixture
def openapi_schema(stack: Stack) -> Iterator[BaseOpenAPISchema]:
    require_a_working_hypothesis_jsonschema()
    # a small batch bound keeps generated batches quick; a few entries give the DLQ routes data
    service_settings = keyed_settings(stack, EVENTQ_MAX_BATCH_SIZE="2")
    for n in range(3):
        seed_dead_letter(service_settings, valid_event(n), reason="rejected", http_status=400)
    with running_service(service_settings) as base_url:
        yield schemathesis.from_uri(base_url + "/openapi.json", validate_schema=True)


# credentials are ours to send: generated cookies and tokens would only test aiohttp's parser
schema = schemathesis.from_pytest_fixture(
    "openapi_schema",
    generation_config=schemathesis.GenerationConfig(with_security_parameters=False),
)


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=3000,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_route_answers_within_its_published_schema(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {ADMIN_KEY}"}, allow_redirects=False)
    case.validate_response(response, checks=CHECKS)
    CASES[case.operation.verbose_name] += 1


def test_the_suite_generated_at_least_500_cases_over_every_route() -> None:
    if not CASES:
        pytest.skip("run together with the schemathesis test above")
    assert sum(CASES.values()) >= MIN_CASES, CASES
    assert len(CASES) == OPERATIONS, sorted(CASES)
