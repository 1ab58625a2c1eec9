"""fake_hubspot: a faithful stand-in for HubSpot's marketing-events API, with fault injection."""

from fake_hubspot.app import create_app
from fake_hubspot.config import FakeConfig, RateLimit, RefreshGrant
from fake_hubspot.control import (
    FakeControlError,
    FakeHubSpot,
    fake_subprocess,
    start_fake_subprocess,
    stop_fake_subprocess,
)

__all__ = [
    "FakeConfig",
    "FakeControlError",
    "FakeHubSpot",
    "RateLimit",
    "RefreshGrant",
    "create_app",
    "fake_subprocess",
    "start_fake_subprocess",
    "stop_fake_subprocess",
]
