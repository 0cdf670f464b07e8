"""CLI of the post-delivery response.

``mailward intel import|expire`` (beside ``intel add|list``), ``mailward trap
run|poll``, ``mailward incident list|show|status|close|policy``,
``mailward retract MESSAGE-ID`` and ``mailward restore MESSAGE-ID``. The
scans and pulls run in this process, on the same store and mailboxes as
the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import click

from mailward.cli import Context, console, intel, pass_context, run
from mailward.terminal import cell, tsv_line


async def _with_store(context: Context, body: Callable[[Any], Awaitable[Any]]) -> Any:
    from mailward.store import Store

    settings = context.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    try:
        await store.migrate()
        return await body(store)
    finally:
        await store.close()


def _scanner(context: Context, store):
    from mailward.trap.retroscan import Retroscan

    return Retroscan(context.settings, store)


def _fail(text: str, status: int = 1) -> None:
    console.print(f"[red]{text}[/red]")
    sys.exit(status)


def _print_intake(report) -> None:
    click.echo(f"added {report.added}, updated {report.updated}, refused "
               f"{len(report.refused)}, expired {report.expired}, duplicates "
               f"{report.duplicates}, malformed {report.skipped.get('malformed', 0)}")
    for key, reason in report.refused:
        click.echo(f"refused {key}: {reason}")
    for error in report.errors:
        click.echo(f"skipped {error}")
    for why, count in sorted(report.skipped.items()):
        if why != "malformed":
            click.echo(f"ignored {count} {why}")


# intel import / expire


@intel.command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", default="auto",
              type=click.Choice(["auto", "text", "csv", "json", "stix", "misp"]))
@click.option("--source", default=None, help="Source name (default: the file's name).")
@click.option("--category", default=None,
              type=click.Choice(["phish", "malware", "spam", "impostor"]))
@click.option("--force", is_flag=True, help="Store indicators that match too much of the index.")
@pass_context
def intel_import(context: Context, files: tuple[Path, ...], fmt: str, source: str | None,
                 category: str | None, force: bool) -> None:
    """Import indicators from text, CSV, JSON, STIX 2.1 or MISP files."""
    from mailward.intel.feeds import FeedError, read_feed
    from mailward.trap.intake import add_feed

    async def body(store) -> list:
        reports = []
        for path in files:
            feed = read_feed(path, source, category, fmt)
            reports.append((path, await add_feed(context.settings, store, feed, force, "cli")))
        return reports

    try:
        reports = run(_with_store(context, body))
    except FeedError as error:
        _fail(str(error), 2)
    refused = False
    for path, report in reports:
        click.echo(f"{path}:")
        _print_intake(report)
        refused = refused or bool(report.refused)
    if refused:
        sys.exit(3)


@intel.command("expire")
@pass_context
def intel_expire(context: Context) -> None:
    """Delete indicators whose expiry has passed."""
    from mailward.intel.store import IntelStore

    count = run(_with_store(context, lambda store: IntelStore(store).expire()))
    click.echo(f"expired {count} indicators")


# trap


@click.group()
def trap() -> None:
    """Retro-scan delivered mail against the threat intelligence."""


@trap.command("run")
@click.option("--all", "everything", is_flag=True,
              help="Scan every unexpired indicator, not only what changed since the last scan.")
@click.option("--force", multiple=True,
              help="TYPE:VALUE to scan even if too common, and to pull again the copies "
                   "an analyst restored.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
def trap_run(context: Context, everything: bool, force: tuple[str, ...], as_json: bool) -> None:
    """Retro-scan now: find delivered copies carrying bad indicators and pull them."""

    async def body(store) -> dict:
        scanner = _scanner(context, store)
        report = await (scanner.run_all(force) if everything else scanner.run_pending(force))
        return report.as_dict()

    report = run(_with_store(context, body))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['indicators']} indicators, {report['matched_copies']} copies matched, "
               f"{report['pulled']} pulled, {report['failed']} failed, incidents "
               f"{report['incidents'] or '-'} in {report['seconds']}s")
    for entry in report["refused"]:
        click.echo(f"refused {entry['indicator']}: {entry['reason']}")


@trap.command("poll")
@pass_context
def trap_poll(context: Context) -> None:
    """Read the configured feed files, TAXII collections and MISP once."""
    from mailward.trap.service import poll_feeds

    outcome = run(_with_store(context, lambda store: poll_feeds(context.settings, store)))
    click.echo(json.dumps(outcome, indent=2, default=str))


# incident


@click.group()
def incident() -> None:
    """Incidents the retro-scan opened: list, show, move through the workflow."""


@incident.command("list")
@click.option("--status", default=None, type=click.Choice(["open", "investigating", "closed"]))
@click.option("--json", "as_json", is_flag=True)
@pass_context
def incident_list(context: Context, status: str | None, as_json: bool) -> None:
    """List incidents, newest first."""
    from sqlalchemy import select

    from mailward.store.models import Incident
    from mailward.trap.incidents import view

    async def body(store) -> list:
        async with store.session() as session:
            query = select(Incident).order_by(Incident.id.desc()).limit(500)
            if status:
                query = query.where(Incident.status == status)
            return [view(row) for row in (await session.scalars(query)).all()]

    rows = run(_with_store(context, body))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for found in rows:
        summary = found["summary"]
        click.echo(tsv_line(found["id"], found["status"], found["assessment"],
                            f"{summary.get('copies', 0)} copies",
                            f"{summary.get('pulled', 0)} pulled", found["title"]))


@incident.command("show")
@click.argument("incident_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_context
def incident_show(context: Context, incident_id: int, as_json: bool) -> None:
    """Show an incident: copies, pulls, read state and clicks before and after the pull."""
    from mailward.trap.incidents import IncidentError

    try:
        data = run(_with_store(context, lambda store: _scanner(context, store)
                               .reassess(incident_id)))
    except IncidentError as error:
        _fail(str(error))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"incident {data['id']}: {cell(data['title'])}")
    click.echo(f"status {data['status']}, {data['assessment']}")
    for copy in data["copies"]:
        read = {True: "read", False: "unread", None: "?"}[copy["was_read"]]
        restored = ([f"restored {copy['restored_at']} by {copy['restored_by']}"]
                    if copy.get("restored_at") else [])
        click.echo("  " + tsv_line(copy["recipient"], copy["pull"] or "not pulled", read,
                                   f"pulled {copy['pulled_at'] or '-'}", *restored))
        for clicked in copy["clicks"]:
            who = "person" if clicked["human"] else "scanner"
            when = "before" if clicked["before_pull"] else "after"
            click.echo(f"    click by a {who} at {clicked['at']} ({when} the pull)")
    if data["note"]:
        click.echo(f"note: {cell(data['note'])}")


def _set_status(context: Context, incident_id: int, status: str, note: str) -> None:
    from mailward.trap.incidents import IncidentError, set_status, view

    async def body(store) -> dict:
        async with store.session() as session:
            row = await set_status(session, incident_id, status, note, "cli")
            await session.commit()
            return view(row)

    try:
        row = run(_with_store(context, body))
    except IncidentError as error:
        _fail(str(error), 2)
    click.echo(f"incident {row['id']} is {row['status']}")


@incident.command("status")
@click.argument("incident_id", type=int)
@click.argument("status", type=click.Choice(["open", "investigating", "closed"]))
@click.option("--note", default="")
@pass_context
def incident_status(context: Context, incident_id: int, status: str, note: str) -> None:
    """Move an incident to open, investigating or closed."""
    _set_status(context, incident_id, status, note)


@incident.command("close")
@click.argument("incident_id", type=int)
@click.option("--note", required=True, help="Why it is closed.")
@pass_context
def incident_close(context: Context, incident_id: int, note: str) -> None:
    """Close an incident with a note."""
    _set_status(context, incident_id, "closed", note)


@incident.command("policy")
@click.argument("incident_id", type=int)
@click.option("--block", type=click.Choice(["none", "sender", "domain"]), default="domain",
              show_default=True)
@click.option("--rule/--no-rule", default=True, help="Create a campaign rule (retro-scanned).")
@click.option("--expires", default=None, help="Duration, e.g. 30d (default trap.block_expiry).")
@pass_context
def incident_policy(context: Context, incident_id: int, block: str, rule: bool,
                    expires: str | None) -> None:
    """Block the incident's sender and create a campaign rule, in one action."""
    from mailward.config import parse_duration
    from mailward.trap.policy import apply_rule, block_sender, campaign_rule

    seconds = parse_duration(expires) if expires else None

    async def body(store) -> dict:
        out: dict[str, Any] = {"blocked": [], "rule": None}
        if block != "none":
            out["blocked"] = await block_sender(context.settings, store, incident_id, block,
                                                seconds, "cli")
        if rule:
            made = await campaign_rule(context.settings, store, incident_id, seconds, "cli")
            out["rule"] = {"id": made.id, "fingerprint": made.fingerprint,
                           "scan": await apply_rule(_scanner(context, store), made)}
        return out

    try:
        click.echo(json.dumps(run(_with_store(context, body)), indent=2))
    except ValueError as error:
        _fail(str(error), 2)


# retract / restore


def _pull(context: Context, message: str, reason: str, restore: bool) -> None:
    from mailward.mailbox.base import MailboxError

    async def body(store) -> list:
        retractor = _scanner(context, store).retractor
        if restore:
            return await retractor.restore_message(message, reason, actor="cli")
        return await retractor.retract_message(message, reason, actor="cli")

    try:
        results = run(_with_store(context, body))
    except MailboxError as error:
        _fail(str(error))
    for result in results:
        read = {True: "read", False: "unread", None: "?"}[result.was_read]
        click.echo(tsv_line(result.recipient, result.status,
                            f"{result.from_folder} -> {result.to_folder}", read,
                            *([result.error] if result.error else [])))
    if any(not r.ok and r.status not in ("exempt", "kept") for r in results):
        sys.exit(1)


@click.command("retract")
@click.argument("message")
@click.option("--reason", default="retracted from the command line")
@pass_context
def retract(context: Context, message: str, reason: str) -> None:
    """Pull every delivered copy of MESSAGE (Message-ID or queue id) into Quarantine."""
    _pull(context, message, reason, restore=False)


@click.command("restore")
@click.argument("message")
@click.option("--reason", default="restored from the command line")
@pass_context
def restore(context: Context, message: str, reason: str) -> None:
    """Put every pulled copy of MESSAGE back in the folder it was pulled from."""
    _pull(context, message, reason, restore=True)
