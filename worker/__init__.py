"""The Celery side of eventq: app, delivery task, HubSpot client, retry policy and stores."""

__all__: list[str] = []
