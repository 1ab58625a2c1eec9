"""Schemathesis against `/openapi.json`: every route, generated requests, no 5xx, every answer
matches the published schema (status, content type, headers, body)."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, __version__, given, settings
from hypothesis.internal.conjecture.utils import many
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.models import APIOperation
from schemathesis.specs.openapi.schemas import BaseOpenAPISchema

from eventq.settings import Settings
from tests.conftest import valid_event
from tests.integration.http_support import (
    ADMIN_KEY,
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
# credentials are ours to send: generated cookies and tokens would only test aiohttp's parser
GENERATION = schemathesis.GenerationConfig(with_security_parameters=False)
OPERATIONS = 24  # 22 paths; two of them also take a second method


def require_a_working_hypothesis_jsonschema() -> None:
    """Fail with the fix when Hypothesis dropped an API that hypothesis-jsonschema 0.23 uses."""
    if not hasattr(many, "more"):
        pytest.fail(
            f"hypothesis {__version__} removed many.more(), which hypothesis-jsonschema (used by "
            "schemathesis to generate bodies) needs: pin hypothesis<=6.170.9"
        )


@pytest.fixture
def service_env() -> dict[str, str]:
    # a small batch bound keeps generated batches quick
    return {"EVENTQ_MAX_BATCH_SIZE": "2"}


@pytest.fixture
def openapi_schema(service_settings: Settings, service: str) -> BaseOpenAPISchema:
    require_a_working_hypothesis_jsonschema()
    # a few entries give the DLQ routes data
    for n in range(3):
        seed_dead_letter(service_settings, valid_event(n), reason="rejected", http_status=400)
    return schemathesis.from_uri(
        service + "/openapi.json", validate_schema=True, generation_config=GENERATION
    )


EXAMPLES = settings(
    max_examples=60,
    deadline=3000,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


def check_operation(operation: APIOperation, cases: Counter[str]) -> None:
    """Call `operation` with generated requests; each answer must match its published schema."""

    @EXAMPLES
    @given(case=operation.as_strategy(generation_config=GENERATION))
    def answers_within_its_schema(case: schemathesis.Case) -> None:
        response = case.call(
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, allow_redirects=False
        )
        case.validate_response(response, checks=CHECKS)
        cases[operation.verbose_name] += 1

    answers_within_its_schema()


def test_every_route_answers_within_its_published_schema_over_at_least_500_cases(
    openapi_schema: BaseOpenAPISchema,
) -> None:
    # Given every operation the service publishes
    operations = [result.ok() for result in openapi_schema.get_all_operations()]
    assert len(operations) == OPERATIONS
    # When each is called with generated requests (counted here, by the test that sends them)
    cases: Counter[str] = Counter()
    for operation in operations:
        check_operation(operation, cases)
    # Then every answer matched (checked per case), every route was called, 500 cases in all
    assert sorted(cases) == sorted(operation.verbose_name for operation in operations)
    assert sum(cases.values()) >= MIN_CASES, cases
