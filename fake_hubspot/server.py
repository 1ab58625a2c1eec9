"""Command line entry point: run the fake HubSpot on a host and port until interrupted."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from aiohttp import web

from fake_hubspot.admin import routes_help
from fake_hubspot.app import create_app
from fake_hubspot.config import (
    BATCH_ERROR_POINTERS,
    READ_SCOPE,
    WRITE_SCOPE,
    BatchConfig,
    FakeConfig,
    RateLimit,
    RefreshGrant,
)

__all__ = ["build_parser", "config_from_args", "main"]

_DEFAULT_TOKEN = "fake-token"  # noqa: S105 - the fake's well-known default


def _rate(text: str) -> RateLimit | None:
    try:
        return RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _grant(text: str) -> RefreshGrant:
    try:
        return RefreshGrant.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    if not scopes:
        raise argparse.ArgumentTypeError("expected scopes separated by commas")
    return scopes


_EPILOG = """\
HubSpot routes: POST and PUT (upsert) /marketing/v3/marketing-events/events[/{{id}}],
POST .../events/upsert (batch upsert), GET .../events/{{id}} (read scope),
DELETE .../events/{{id}}, GET .../associations/{{account}}/{{id}}/lists (write scope),
POST /oauth/v3/token and /oauth/v1/token, POST /oauth/v3/token/introspect.

Control routes (no auth; a POST takes a JSON body, * marks a required field):
{routes}

Faults (fail-next, failure-rate, hang, close-*) apply to every write: POST, PUT and the batch
upsert alike. For example, make the next delivery a dead letter (400), then look:
  curl -XPOST http://127.0.0.1:8090/_fake/fail-next -d '{{"status": 400}}'
  curl http://127.0.0.1:8090/_fake/requests
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m fake_hubspot` / `eventq fake-hubspot`."""
    defaults = FakeConfig()
    parser = argparse.ArgumentParser(
        prog="fake_hubspot",
        description="A fake HubSpot marketing-events API with fault injection (/_fake/ routes).",
        epilog=_EPILOG.format(routes=routes_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port, 0 = any (default 8090)")
    parser.add_argument(
        "--token",
        action="append",
        metavar="TOKEN",
        help=f"accepted private-app bearer token, repeatable (default {_DEFAULT_TOKEN!r})",
    )
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        default=defaults.rate_limit,
        metavar="N/WINDOW|off",
        help="rolling limit per app or portal, e.g. 100/10s, 50/500ms or off (default 100/10s)",
    )
    parser.add_argument(
        "--token-scopes",
        type=_scopes,
        default=defaults.token_scopes,
        metavar="SCOPE,SCOPE",
        help=(
            f"scopes of the --token tokens (default {WRITE_SCOPE} only, what a private app set "
            f"up for this job has: a GET of an event then answers 403; add {READ_SCOPE} to "
            "allow it)"
        ),
    )
    parser.add_argument("--daily-limit", type=int, default=None, help="daily request budget")
    parser.add_argument(
        "--daily-timezone", default="UTC", help="IANA zone whose midnight resets the daily budget"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency of API answers")
    parser.add_argument("--oauth-client-id", default=defaults.oauth_client_id)
    parser.add_argument("--oauth-client-secret", default=defaults.oauth_client_secret)
    parser.add_argument(
        "--oauth-refresh-token",
        type=_grant,
        action="append",
        default=[],
        metavar="PORTAL:TOKEN[:SCOPES]",
        help="accepted refresh token of a portal, scopes comma-separated; repeatable",
    )
    parser.add_argument(
        "--access-token-lifetime-s",
        type=float,
        default=defaults.access_token_lifetime_s,
        help="lifetime of issued access tokens in seconds (default 1800)",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults.batch.max_size,
        help="most inputs of a batch upsert; more answer 400 naming the limit (default 100)",
    )
    parser.add_argument(
        "--batch-error-status",
        type=int,
        choices=(200, 207),
        default=defaults.batch.error_status,
        help="status of a batch answer with errors (default 207 Multi-Status)",
    )
    parser.add_argument(
        "--batch-error-pointer",
        choices=BATCH_ERROR_POINTERS,
        default=defaults.batch.error_pointer,
        help=(
            "how a batch error names its input: external ids in context, inputs[N] in "
            "errors[].in, or none (default external_id)"
        ),
    )
    parser.add_argument(
        "--shuffle-batch-results",
        action="store_true",
        help="answer a batch's results in random order (HubSpot promises no order)",
    )
    logs = parser.add_mutually_exclusive_group()
    logs.add_argument("--access-log", action="store_true", help="log every request to stderr")
    logs.add_argument("--quiet", action="store_true", help="no access log (the default)")
    return parser


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    """Return the startup configuration the parsed arguments describe."""
    if args.daily_limit is not None and args.daily_limit <= 0:
        raise ValueError("--daily-limit must be positive")
    if args.latency_ms < 0 or args.access_token_lifetime_s <= 0:
        raise ValueError("--latency-ms must be >= 0 and --access-token-lifetime-s > 0")
    return FakeConfig(
        tokens=tuple(args.token or [_DEFAULT_TOKEN]),
        rate_limit=args.rate_limit,
        daily_limit=args.daily_limit,
        daily_timezone=args.daily_timezone,
        latency_ms=args.latency_ms,
        oauth_client_id=args.oauth_client_id,
        oauth_client_secret=args.oauth_client_secret,
        refresh_tokens=tuple(args.oauth_refresh_token),
        access_token_lifetime_s=args.access_token_lifetime_s,
        token_scopes=args.token_scopes,
        batch=BatchConfig(
            max_size=args.max_batch_size,
            error_status=args.batch_error_status,
            error_pointer=args.batch_error_pointer,
            shuffle=args.shuffle_batch_results,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the fake until SIGINT/SIGTERM; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sock = socket.create_server((args.host, args.port), reuse_port=False)
    except OSError as exc:
        print(f"fake HubSpot cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    line = f"fake HubSpot listening on http://{shown}:{port}"
    access_log = None
    if args.access_log:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
        access_log = logging.getLogger("aiohttp.access")
    web.run_app(
        create_app(config),
        sock=sock,
        access_log=access_log,
        print=lambda *_: print(line, flush=True),
        shutdown_timeout=2.0,
    )
    return 0
