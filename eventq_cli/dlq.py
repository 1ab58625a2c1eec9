"""`eventq dlq …`: list, show, replay, purge and export dead-letter entries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, get_args

import click
from rich.progress import Progress

from eventq.records import DeadLetterReason
from eventq_cli.output import err, friendly_errors, out, settings_or_exit

__all__ = ["dlq"]

_REASONS = click.Choice(get_args(DeadLetterReason))


def _store() -> Any:
    """The DLQ alone: reading and deleting entries need neither Celery nor the accounts."""
    from eventq.dead_letters import DeadLetterStore
    from eventq.keys import Keys
    from eventq.redis_conn import sync_client

    settings = settings_or_exit()
    return DeadLetterStore(sync_client(settings), Keys(settings.key_prefix))


def _resolve(store: Any, given: str, *, unknown_ok: bool = False) -> str:
    """Return the entry id `given` names (whole, or a unique prefix); raise AmbiguousId, or
    UnknownId unless `unknown_ok` (then `given` comes back as it is: the caller reports it)."""
    from eventq_cli.ids import UnknownId, resolve_id

    try:
        return resolve_id(
            given,
            noun="dead-letter entry",
            exists=lambda entry_id: store.get(entry_id) is not None,
            starting=store.ids_starting,
        )
    except UnknownId:
        if unknown_ok:
            return given
        raise


def _replayer() -> Any:
    from producers.enqueue import Producer
    from producers.replay import Replayer

    return Replayer(Producer(settings_or_exit()))


def _filters(
    reason: str | None, status: int | None, since: datetime | None, text: str | None
) -> Any:
    from eventq.dead_letters import DeadLetterFilter

    return DeadLetterFilter(
        reason=reason, http_status=status, since=since.timestamp() if since else None, text=text
    )


@click.group()
def dlq() -> None:
    """Inspect and repair the dead-letter queue."""


@dlq.command("list")
@click.option("--reason", type=_REASONS, help="Only entries with this reason.")
@click.option("--status", type=int, help="Only entries with this HTTP status.")
@click.option("--since", type=click.DateTime(), help="Only entries dead-lettered after (UTC).")
@click.option("--text", help="Only entries whose payload or error contains this text.")
@click.option("--limit", default=50, show_default=True, help="Entries per page.")
@click.option("--cursor", help="Continue from the cursor a previous page printed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def list_entries(
    reason: str | None,
    status: int | None,
    since: datetime | None,
    text: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List entries, newest first."""
    page = _store().page(_filters(reason, status, since, text), limit=limit, cursor=cursor)
    if as_json:
        out.print_json(
            data={
                "entries": [e.model_dump(mode="json") for e in page.entries],
                "nextCursor": page.next_cursor,
            }
        )
        return
    if not page.entries:
        err.print(
            "no dead-letter entries" + (" match" if (reason or status or since or text) else "")
        )
        return
    from eventq_cli.tables import dead_letters_table

    # crop=False: a line wider than the console is never cut (the table is built to fit)
    out.print(dead_letters_table(page.entries, out.width), crop=False)
    if page.next_cursor:
        err.print(f"more: eventq dlq list --cursor '{page.next_cursor}'")


@dlq.command()
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly_errors
def show(entry_id: str, as_json: bool) -> None:
    """Show one entry: payload, error, every attempt. ENTRY_ID may be a unique prefix (at least
    6 characters)."""
    store = _store()
    entry = store.get(_resolve(store, entry_id))
    if entry is None:
        err.print(f"[red]error:[/red] no dead-letter entry {entry_id!r}")
        raise SystemExit(1)
    if as_json:
        out.print_json(entry.model_dump_json())
        return
    from eventq_cli.tables import dead_letter_table

    out.print(dead_letter_table(entry))


@dlq.command()
@click.argument("entry_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Replay every entry (narrow with --reason).")
@click.option("--reason", type=_REASONS, help="With --all: only entries with this reason.")
@click.option("--dry-run", is_flag=True, help="Validate and report; change nothing.")
@click.option(
    "--patch", help='JSON merge-patch applied before re-validation, e.g. \'{"eventName":"x"}\'.'
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON result per entry.")
@friendly_errors
def replay(
    entry_ids: tuple[str, ...],
    all_: bool,
    reason: str | None,
    dry_run: bool,
    patch: str | None,
    as_json: bool,
) -> None:
    """Re-validate and re-enqueue entries; each is deleted once its new job is accepted.

    Each ENTRY_ID may be a unique prefix (at least 6 characters); an ambiguous one stops the
    command before anything is replayed.
    """
    if bool(entry_ids) == all_:
        raise click.UsageError("give entry ids, or --all (not both)")
    patch_doc = _parse_patch(patch)
    replayer = _replayer()
    ids = [_resolve(replayer.store, i, unknown_ok=True) for i in entry_ids] or [
        e.id for e in replayer.store.iter_matching(_filters(reason, None, None, None))
    ]
    counts: dict[str, int] = {}
    done: list[str] = []
    try:
        with Progress(console=err, disable=len(ids) < 200 or as_json) as progress:
            task = progress.add_task("replaying", total=len(ids))
            for result in replayer.replay_ids(ids, dry_run=dry_run, patch=patch_doc):
                done.append(result.entry_id)
                counts[result.status] = counts.get(result.status, 0) + 1
                if as_json:
                    out.print_json(data=result.__dict__)
                elif result.status not in ("replayed", "would_replay"):
                    err.print(
                        f"{result.entry_id}: {result.status}: {result.detail}", highlight=False
                    )
                progress.advance(task)
    finally:
        # Audited like the HTTP admin actions, also when interrupted part way
        outcome = " ".join(f"{status}={n}" for status, n in sorted(counts.items()))
        _audit(
            "dry_run" if dry_run else "replay",
            done,
            outcome or "nothing",
            patch_doc is not None,
        )
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    err.print(("dry run: " if dry_run else "") + summary)
    if counts.get("invalid") or counts.get("missing"):
        raise SystemExit(1)


def _audit(action: Any, ids: list[str], outcome: str, patched: bool = False) -> None:
    """Write a CLI admin action to the audit log, named by the operating-system user."""
    from eventq.audit import audit_entry, cli_user, record_sync
    from eventq.keys import Keys
    from eventq.redis_conn import sync_client

    settings = settings_or_exit()
    entry = audit_entry(cli_user(), "cli", action, ids, outcome, patched=patched)
    record_sync(sync_client(settings), Keys(settings.key_prefix), entry)


def _parse_patch(patch: str | None) -> dict[str, Any] | None:
    if patch is None:
        return None
    try:
        doc = json.loads(patch)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error.msg}", param_hint="--patch") from None
    if not isinstance(doc, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--patch")
    return doc


@dlq.command()
@click.argument("entry_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Purge every entry.")
@click.option("--yes", is_flag=True, help="Required with --all.")
@friendly_errors
def purge(entry_ids: tuple[str, ...], all_: bool, yes: bool) -> None:
    """Delete entries for good."""
    if bool(entry_ids) == all_:
        raise click.UsageError("give entry ids, or --all --yes")
    if all_ and not yes:
        raise click.UsageError("--all deletes every entry: add --yes to confirm")
    store = _store()
    ids = list(entry_ids) or [e.id for e in store.iter_matching()]
    deleted: list[str] = []
    missing: list[str] = []
    try:
        for entry_id in ids:
            (deleted if store.delete(entry_id) else missing).append(entry_id)
    finally:
        outcome = f"deleted={len(deleted)}" + (f" missing={len(missing)}" if missing else "")
        _audit("delete", deleted + missing, outcome)
    for entry_id in missing:
        err.print(f"{entry_id}: no such entry")
    err.print(f"{len(ids) - len(missing)} purged")
    if missing:
        raise SystemExit(1)


@dlq.command()
@friendly_errors
def recount() -> None:
    """Rebuild the DLQ counts the overview and /metrics show (once, after upgrading).

    Reads every entry once; the counts are kept up to date on every change after that.
    """
    counts = _store().recount()
    for reason, n in sorted(counts.by_reason.items()):
        err.print(f"{reason}: {n}")
    err.print(f"{counts.total} entries in {len(counts.groups)} groups counted")


@dlq.command()
@click.option("--reason", type=_REASONS, help="Only entries with this reason.")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default stdout).")
@friendly_errors
def export(reason: str | None, output: Any) -> None:
    """Write entries as JSON Lines (one entry per line) for archiving or analysis."""
    count = 0
    for entry in _store().iter_matching(_filters(reason, None, None, None)):
        output.write(entry.model_dump_json() + "\n")
        count += 1
    err.print(f"{count} entries exported")
