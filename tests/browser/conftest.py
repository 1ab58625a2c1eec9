"""The browser tests drive the same HTTP service as the integration tests, through the same
fixtures (defined once, in tests/integration/conftest.py)."""

from tests.integration.conftest import service, service_env, service_settings

__all__ = ["service", "service_env", "service_settings"]
