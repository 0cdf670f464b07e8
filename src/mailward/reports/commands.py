"""``mailward reports``: figures, the analyst queue, overrides and reporter tokens.

``mailward reports stats --since 30d`` prints the reporter, user-risk and
organisation figures of a period (``--json`` for machines);
``mailward reports override 12 clean`` decides a campaign and re-applies
the actions; ``mailward reports token alice@example.com`` issues the token
the add-in and the browser extension report with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click
from rich.console import Console
from rich.table import Table

from mailward.reports.analysis import VERDICTS
from mailward.terminal import markup_cell

out = Console()


def _when(text: str | None, default: datetime) -> datetime:
    """_when - an ISO date, or a duration back from now (30d), or default."""
    from mailward.config import parse_duration

    if not text:
        return default
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (30d) nor an ISO date") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _context():
    from mailward.cli import Context

    return click.get_current_context().find_object(Context)


@click.group("reports")
def reports() -> None:
    """User reports: figures, the analyst queue, overrides, reporter tokens."""


@reports.command("stats")
@click.option("--since", default=None, help="ISO date or duration back from now (default 30d).")
@click.option("--until", default=None, help="ISO date or duration back from now (default now).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats_command(since: str | None, until: str | None, as_json: bool) -> None:
    """Reporter accuracy, user risk and organisation figures over a period."""
    from mailward.cli import _with_store, run
    from mailward.reports.metrics import stats

    end = _when(until, datetime.now(UTC))
    start = _when(since, end - timedelta(days=30))
    if start >= end:
        raise click.BadParameter("--since must be before --until")
    figures = run(_with_store(_context().settings, lambda store: stats(store, start, end)))
    if as_json:
        click.echo(json.dumps(figures, indent=1))
        return
    org = figures["organisation"]
    table = Table(title=f"Organisation, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in org.items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict)
                      else "-" if value is None else str(value))
    out.print(table)
    reporters = Table(title="Reporters")
    for name in ("reporter", "reports", "confirmed", "false", "accuracy", "median s"):
        reporters.add_column(name)
    for row in figures["reporters"]:
        reporters.add_row(markup_cell(row["reporter"]), str(row["reports"]),
                          str(row["confirmed"]), str(row["false"]), f"{row['accuracy']:.2f}",
                          str(row["median_seconds_from_delivery"] or "-"))
    out.print(reporters)
    users = Table(title="User risk")
    for name in ("user", "risk", "threats", "bad clicks", "real reports", "false reports"):
        users.add_column(name)
    for row in figures["users"][:50]:
        users.add_row(markup_cell(row["user"]), str(row["risk"]), str(row["threats"]),
                      str(row["bad_clicks"]), str(row["real_reports"]),
                      str(row["false_reports"]))
    out.print(users)


@reports.command("queue")
@click.option("--status", default="analyst", show_default=True,
              help="analyst (waiting for a decision), pending, acted, or all.")
def queue_command(status: str) -> None:
    """Reported campaigns, by default those waiting for an analyst."""
    from sqlalchemy import select

    from mailward.cli import _with_store, run
    from mailward.store.models import ReportCluster

    async def body(store):
        query = select(ReportCluster).order_by(ReportCluster.id.desc()).limit(200)
        if status != "all":
            query = query.where(ReportCluster.status == status)
        async with store.session() as session:
            return (await session.scalars(query)).all()

    rows = run(_with_store(_context().settings, body))
    table = Table()
    for name in ("id", "status", "verdict", "confidence", "messages", "sender", "subject"):
        table.add_column(name)
    for row in rows:
        table.add_row(str(row.id), row.status, row.verdict or "-", f"{row.confidence:.2f}",
                      str(len(row.queue_ids)), markup_cell(row.sender, 40),
                      markup_cell(row.subject, 60))
    out.print(table)


@reports.command("override")
@click.argument("cluster_id", type=int)
@click.argument("verdict", type=click.Choice(VERDICTS))
@click.option("--category", type=click.Choice(["phish", "malware", "impostor"]), default=None,
              help="What a malicious campaign is (default: what the analysis found).")
def override_command(cluster_id: int, verdict: str, category: str | None) -> None:
    """Decide a reported campaign; its actions are applied to every copy again."""
    from mailward.cli import run, with_gateway
    from mailward.reports.service import SubmitError, service_of
    from mailward.web import audit
    from mailward.web.commands import actor

    async def body(gateway):
        service = service_of(gateway)
        try:
            result = await service.override(cluster_id, verdict, actor(), category or "")
        except SubmitError as error:
            raise click.ClickException(error.text) from None
        await service.drain()
        await audit.record(gateway.services.store, actor(), "admin", "reports.override",
                           str(cluster_id), verdict=verdict, previous=result["previous"])
        return result

    result = run(with_gateway(_context().settings, body))
    click.echo(f"campaign {cluster_id}: {result['previous'] or 'undecided'} -> {verdict}; "
               f"{result['moved']} cop{'y' if result['moved'] == 1 else 'ies'} moved")


@reports.command("token")
@click.argument("address")
@click.option("--days", type=int, default=0, help="Lifetime in days (default: no expiry).")
def token_command(address: str, days: int) -> None:
    """Issue the token an address reports with (add-in, browser extension)."""
    from mailward.reports.tokens import reporter_token
    from mailward.web.security import load_secret

    if "@" not in address:
        raise click.BadParameter(f"{address!r} is not an email address")
    key = load_secret(_context().settings)
    click.echo(reporter_token(key, address, days * 86400 if days else None))
