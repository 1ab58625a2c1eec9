"""eventq: reliable, rate-limited delivery of HubSpot marketing events."""

from eventq.schema import JobEnvelope, MarketingEvent
from eventq.settings import Settings, get_settings

__all__ = ["JobEnvelope", "MarketingEvent", "Settings", "get_settings"]
