"""The HTTP service under test, one way for every test: `service` (its base URL) on `stack`.

A module changes the service's settings by overriding `service_env`; `api` and `admin` are
clients sending the producer key and the admin key. tests/browser uses these fixtures too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventq.settings import Settings
from tests.conftest import Stack
from tests.integration.http_support import ADMIN_KEY, KEY_ENV, Api, running_service


@pytest.fixture
def service_env() -> dict[str, str]:
    """Settings the HTTP service runs with besides the stack's; override it in a module."""
    return {}


@pytest.fixture
def service_settings(stack: Stack, service_env: dict[str, str]) -> Settings:
    """The stack's settings with the test API keys and `service_env`, written into the stack's
    environment (so its workers and CLI runs see them too)."""
    stack.env.update(KEY_ENV)
    stack.env.update(service_env)
    return stack.settings


@pytest.fixture
def service(service_settings: Settings) -> Iterator[str]:
    """The HTTP service on a loopback port for the test's duration; its base URL."""
    with running_service(service_settings) as base_url:
        yield base_url


@pytest.fixture
def api(service: str) -> Api:
    """A client of `service` sending the producer key."""
    return Api(service)


@pytest.fixture
def admin(service: str) -> Api:
    """A client of `service` sending the admin key."""
    return Api(service, ADMIN_KEY)
