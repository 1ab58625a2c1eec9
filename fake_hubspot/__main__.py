"""`python -m fake_hubspot`: run the fake HubSpot server."""

from fake_hubspot.server import main

if __name__ == "__main__":
    raise SystemExit(main())
