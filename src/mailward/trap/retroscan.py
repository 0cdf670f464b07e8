"""Retro-scan: new intelligence against what was already delivered.

Every change of the intelligence store moves its generation; the trap
service then queues a scan of the indicators added or refreshed since the
last one (a watermark in ``meta``, and each indicator's ``scanned_at``: the
refresh a scan has seen is not scanned again, so an unrelated indicator
added later does not rescan the set). For each indicator the message index
gives the copies delivered within ``trap.lookback`` that carry it; each hit
opens or updates an incident; the category's rule decides the pull (malware
and phishing read or unread, spam only while unread, by default); copies in
``trap.exempt_mailboxes`` are never touched. Every member's copy of a
message mailward expanded from a list is a copy of its own in the index, so
each is found and pulled alike; the copies of forwards between local
mailboxes linked to a hit message (``trap.forwards``) join its incident
and are pulled under the same rule. Then the click log decides the
incident's assessment and the SOC is alerted.

A copy an analyst restored (``mailward restore``, the console, the API)
is not pulled again for an indicator that was known - added or last
refreshed - before the restore: the analyst has judged that copy against
it. An indicator added or refreshed after the restore pulls it again, as
does ``mailward trap run --force TYPE:VALUE`` or ``mailward retract``.

An indicator that matches more than ``trap.max_share`` of the window is
refused (a bare common domain would empty every mailbox) unless forced;
the refusal is an alert of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, or_, select, update

from mailward.mailbox.retract import FAILED, PullResult, Retractor
from mailward.store.models import (Copy, ForcedIndicator, Incident, IncidentCopy,
                                   Indicator as IndicatorRow, Meta, Retraction,
                                   UtcDateTime)
from mailward.trap import incidents
from mailward.trap.forwards import forwarded_hits
from mailward.trap.lookup import CopyHit, IndexLookup, Indicator
from mailward.trap.notify import Notifier, incident_alert, pull_failure_alert

if TYPE_CHECKING:
    from mailward.config import Settings
    from mailward.store import Store

log = logging.getLogger("mailward.trap")

WATERMARK_KEY = "trap_watermark_us"
# A scan re-reads indicators this much older than its watermark: a change
# committed late by a slow transaction is still seen (a repeat costs nothing).
OVERLAP = timedelta(seconds=5)


@dataclass
class IndicatorOutcome:
    indicator: Indicator
    matched: int = 0
    refused: str = ""
    incident_id: int | None = None
    pulls: dict[str, int] = field(default_factory=dict)


@dataclass
class ScanReport:
    """What one retro-scan found and did."""

    indicators: int = 0
    matched_copies: int = 0
    pulled: int = 0
    failed: int = 0
    refused: list[IndicatorOutcome] = field(default_factory=list)
    outcomes: list[IndicatorOutcome] = field(default_factory=list)
    incidents: list[int] = field(default_factory=list)
    seconds: float = 0.0
    last_pull_at: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    def phase(self, name: str, since: float) -> float:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - since
        return now

    def as_dict(self) -> dict[str, Any]:
        return {"indicators": self.indicators, "matched_copies": self.matched_copies,
                "pulled": self.pulled, "failed": self.failed,
                "refused": [{"indicator": o.indicator.key, "reason": o.refused}
                            for o in self.refused],
                "incidents": self.incidents, "seconds": round(self.seconds, 3),
                "phases": {k: round(v, 3) for k, v in self.phases.items()}}


def pull_rule(settings: "Settings", category: str) -> str:
    return getattr(settings.trap, f"pull_{category}", "always")


def too_common(matched: int, total: int, settings: "Settings") -> str:
    """too_common - why an indicator matching this many copies is refused, or ""."""
    trap = settings.trap
    if matched < trap.max_share_min_copies or not total:
        return ""
    share = matched / total
    if share <= trap.max_share:
        return ""
    return (f"matches {matched} of {total} copies in the look-back ({share:.0%}), more "
            f"than trap.max_share = {trap.max_share:.0%}; add it with --force if meant")


class Retroscan:
    """Runs scans: look-up, incidents, pulls, assessment, alerts."""

    def __init__(self, settings: "Settings", store: "Store", retractor: Retractor | None = None,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier or Notifier(settings)
        self.retractor = retractor or Retractor.from_settings(settings, store,
                                                              alert=self._pull_failed)

    async def _pull_failed(self, result: PullResult) -> None:
        await self.notifier.send(pull_failure_alert(result.as_dict()))

    # Which indicators to scan.

    async def pending(self, now: datetime | None = None) -> tuple[list[Indicator], datetime]:
        """pending - unexpired indicators added or refreshed and not scanned since."""
        now = now or datetime.now(UTC)
        async with self.store.session() as session:
            mark = await session.scalar(select(Meta.value).where(Meta.key == WATERMARK_KEY))
            since = (datetime.fromtimestamp(mark / 1e6, UTC) - OVERLAP if mark
                     else datetime.fromtimestamp(0, UTC))
            rows = (await session.execute(
                select(IndicatorRow.type, IndicatorRow.value, IndicatorRow.category,
                       IndicatorRow.source, IndicatorRow.confidence, IndicatorRow.added_at)
                .where(IndicatorRow.added_at > since,
                       or_(IndicatorRow.scanned_at.is_(None),
                           IndicatorRow.scanned_at < IndicatorRow.added_at),
                       or_(IndicatorRow.expires_at.is_(None), IndicatorRow.expires_at > now))
            )).all()
        newest = max((row.added_at for row in rows), default=since + OVERLAP)
        return [Indicator(r.type, r.value, r.category, r.source, r.confidence, r.added_at)
                for r in rows], newest

    async def mark_scanned(self, indicators: Iterable[Indicator]) -> None:
        """mark_scanned - remember which refresh of each indicator was scanned."""
        table = IndicatorRow.__table__
        params = [{"b_type": i.type, "b_value": i.value, "b_source": i.source,
                   "b_at": i.added_at} for i in indicators if i.added_at is not None]
        if not params:
            return
        # Only the refresh that was read: one committed since is scanned next time.
        statement = (update(table).where(
            table.c.type == bindparam("b_type"), table.c.value == bindparam("b_value"),
            table.c.source == bindparam("b_source"),
            table.c.added_at == bindparam("b_at", type_=UtcDateTime()))
            .values(scanned_at=bindparam("b_at", type_=UtcDateTime())))
        async with self.store.session() as session:
            for start in range(0, len(params), 500):
                await session.execute(statement, params[start:start + 500])
            await session.commit()

    async def advance(self, newest: datetime) -> None:
        value = int(newest.timestamp() * 1e6)
        async with self.store.session() as session:
            result = await session.execute(update(Meta).where(
                Meta.key == WATERMARK_KEY, Meta.value < value).values(value=value))
            if not result.rowcount and await session.get(Meta, WATERMARK_KEY) is None:
                session.add(Meta(key=WATERMARK_KEY, value=value))
            await session.commit()

    async def run_pending(self, force: Iterable[str] = ()) -> ScanReport:
        """run_pending - scan what changed since the last scan, then move the mark."""
        indicators, newest = await self.pending()
        report = await self.scan(indicators, force=force)
        await self.mark_scanned(indicators)
        await self.advance(newest)
        return report

    async def run_all(self, force: Iterable[str] = ()) -> ScanReport:
        """run_all - scan every unexpired indicator (``mailward trap run --all``)."""
        now = datetime.now(UTC)
        async with self.store.session() as session:
            rows = (await session.execute(
                select(IndicatorRow.type, IndicatorRow.value, IndicatorRow.category,
                       IndicatorRow.source, IndicatorRow.confidence, IndicatorRow.added_at)
                .where(or_(IndicatorRow.expires_at.is_(None), IndicatorRow.expires_at > now))
            )).all()
        indicators = [Indicator(*row) for row in rows]
        report = await self.scan(indicators, force=force)
        await self.mark_scanned(indicators)
        return report

    # One scan.

    async def scan(self, indicators: Iterable[Indicator], force: Iterable[str] = (),
                   now: datetime | None = None) -> ScanReport:
        started = time.monotonic()
        now = now or datetime.now(UTC)
        items = list({i.key: i for i in indicators}.values())
        explicit = set(force)
        report = ScanReport(indicators=len(items))
        if not items:
            return report
        async with self.store.session() as session:
            forced = set(force) | set((await session.scalars(
                select(ForcedIndicator.key))).all())
            lookup = IndexLookup.window(session, now, self.settings.trap.lookback)
            found = await lookup.find(items)
            total = await lookup.total() if found else 0
        report.phase("look-up", started)
        accepted: list[tuple[Indicator, list[CopyHit]]] = []
        for indicator, hits in found.items():
            reason = "" if indicator.key in forced else too_common(len(hits), total,
                                                                   self.settings)
            if not reason:
                accepted.append((indicator, hits))
                continue
            outcome = IndicatorOutcome(indicator, matched=len(hits), refused=reason)
            report.refused.append(outcome)
            log.warning("retro-scan refused %s: %s", indicator.key, reason)
            await self.notifier.send({
                "event": "indicator-refused", "title": f"refused {indicator.key}",
                "assessment": "refused", "text": f"{indicator.key} {reason}",
                "incident": {"id": "", "indicator": {"type": indicator.type,
                                                     "value": indicator.value},
                             "summary": {}}})
        await self.handle(accepted, report, explicit)
        report.seconds = time.monotonic() - started
        log.info("retro-scan: %d indicators, %d copies matched, %d pulled, %d failed, "
                 "%d refused in %.2fs", report.indicators, report.matched_copies,
                 report.pulled, report.failed, len(report.refused), report.seconds)
        return report

    async def handle(self, accepted: list[tuple[Indicator, list[CopyHit]]],
                     report: ScanReport, forced: Iterable[str] = ()) -> None:
        """handle - incidents for every hit, then each copy pulled once, then alerts.

        The work is batched across indicators: one transaction opens or
        updates every incident, the pulls run together (bounded by
        trap.pull_concurrency), and one transaction records them and
        assesses the incidents. A copy two indicators found is pulled once,
        by the strictest of their rules. A copy restored after every
        indicator that found it was known stays where the analyst put it
        (unless the indicator is in forced, given with this scan).
        """
        if not accepted:
            return
        mark = time.monotonic()
        outcomes: dict[int, IndicatorOutcome] = {}
        fresh: dict[int, bool] = {}
        async with self.store.session() as session:
            if self.settings.trap.follow_forwards:
                # Forwards of a hit message between local mailboxes are hits too.
                hops = self.settings.trap.forward_hops
                accepted = [(indicator, hits + await forwarded_hits(session, hits, hops))
                            for indicator, hits in accepted]
            for indicator, hits in accepted:
                incident, new = await incidents.open_or_update(session, indicator, hits)
                outcomes[incident.id] = IndicatorOutcome(indicator, len(hits),
                                                         incident_id=incident.id)
                fresh[incident.id] = bool(new)
            await session.commit()
        mark = report.phase("incidents", mark)
        members: dict[int, list[int]] = {}
        plan: dict[int, tuple[str, int, str]] = {}
        states: dict[int, str] = {}
        order = {"always": 0, "unread": 1, "never": 2}
        forced = set(forced)
        restored = await self.restored_at({hit.copy_id for _, hits in accepted
                                           for hit in hits})
        kept_restored: set[tuple[int, int]] = set()
        now = datetime.now(UTC)
        for (indicator, hits), incident_id in zip(accepted, outcomes):
            report.incidents.append(incident_id)
            report.matched_copies += len(hits)
            rule = pull_rule(self.settings, indicator.category)
            known_at = indicator.added_at or now
            for hit in hits:
                members.setdefault(hit.copy_id, []).append(incident_id)
                states[hit.copy_id] = hit.state
                back = restored.get(hit.copy_id)
                if (back is not None and known_at <= back and indicator.key not in forced
                        and hit.state not in ("retracted", "gone")):
                    # The analyst put it back knowing this indicator: leave it there.
                    kept_restored.add((incident_id, hit.copy_id))
                    continue
                current = plan.get(hit.copy_id)
                if current is None or order[rule] < order[current[0]]:
                    plan[hit.copy_id] = (rule, incident_id,
                                         f"{indicator.category} indicator {indicator.key} "
                                         f"({indicator.source})")

        # Copies already out of the mailboxes are not asked again.
        todo = [(copy_id, rule, incident_id, reason)
                for copy_id, (rule, incident_id, reason) in plan.items()
                if rule != "never" and states[copy_id] not in ("retracted", "gone")]
        rows: dict[int, Copy] = {}
        async with self.store.session() as session:
            wanted = [copy_id for copy_id, *_ in todo]
            for start in range(0, len(wanted), 500):
                for row in (await session.scalars(select(Copy).where(
                        Copy.id.in_(wanted[start:start + 500])))).all():
                    rows[row.id] = row
        results = await asyncio.gather(*(
            self.retractor.retract(rows.get(copy_id, copy_id), reason, incident_id=incident_id,
                                   actor="retro-scan", only_unread=rule == "unread")
            for copy_id, rule, incident_id, reason in todo))
        if results:
            report.last_pull_at = time.monotonic()
        mark = report.phase("pulls", mark)
        by_copy = {result.copy_id: result for result in results}

        async with self.store.session() as session:
            links = {}
            ids = list(outcomes)
            for start in range(0, len(ids), 500):
                for link in (await session.scalars(select(IncidentCopy).where(
                        IncidentCopy.incident_id.in_(ids[start:start + 500])))).all():
                    links[(link.incident_id, link.copy_id)] = link
            for copy_id, incident_ids in members.items():
                result = by_copy.get(copy_id)
                for incident_id in incident_ids:
                    outcome = outcomes[incident_id]
                    if (incident_id, copy_id) in kept_restored:
                        outcome.pulls["restored"] = outcome.pulls.get("restored", 0) + 1
                        link = links.get((incident_id, copy_id))
                        if link is not None and not link.action:
                            link.action = "restored"  # found after the restore
                        continue
                    if result is not None:
                        status, was_read = result.status, result.was_read
                    elif states[copy_id] in ("retracted", "gone"):
                        status = "already" if states[copy_id] == "retracted" else "gone"
                        was_read = None
                    else:
                        continue
                    outcome.pulls[status] = outcome.pulls.get(status, 0) + 1
                    link = links.get((incident_id, copy_id))
                    if link is not None:
                        incidents.mark_pull(link, status, was_read)
            views = []
            for incident_id in outcomes:
                stored = await session.get(Incident, incident_id)
                before = stored.assessment
                await incidents.assess(session, stored)
                views.append((incident_id, before, incidents.view(stored)))
            await session.commit()
        mark = report.phase("assessment", mark)
        report.outcomes.extend(outcomes.values())
        report.pulled += sum(1 for r in results if r.status == "pulled")
        report.failed += sum(1 for r in results if r.status == FAILED)
        for incident_id, before, view in views:
            if fresh[incident_id] or view["assessment"] != before:
                event = "incident-opened" if before == "pending" else "incident-updated"
                await self.notifier.send(incident_alert(event, view))
        report.phase("alerts", mark)

    async def restored_at(self, copy_ids: set[int]) -> dict[int, datetime]:
        """restored_at - when each copy was last restored (copies never restored left out)."""
        out: dict[int, datetime] = {}
        ids = sorted(copy_ids)
        async with self.store.session() as session:
            for start in range(0, len(ids), 500):
                rows = (await session.execute(
                    select(Retraction.copy_id, func.max(Retraction.id))
                    .where(Retraction.copy_id.in_(ids[start:start + 500]),
                           Retraction.status.in_(("restored", "pulled", "moved")))
                    .group_by(Retraction.copy_id))).all()
                last = [row[1] for row in rows]
                if not last:
                    continue
                for entry in (await session.scalars(select(Retraction).where(
                        Retraction.id.in_(last)))).all():
                    # Restored and not pulled or moved since: the analyst's choice holds.
                    if entry.action == "restore" and entry.status == "restored":
                        out[entry.copy_id] = entry.finished_at
        return out

    async def reassess(self, incident_id: int) -> dict[str, Any]:
        """reassess - recount clicks (a click logged after the scan) and alert on change."""
        async with self.store.session() as session:
            stored = await session.get(Incident, incident_id)
            if stored is None:
                raise incidents.IncidentError(f"no incident {incident_id}")
            before = stored.assessment
            detail = await incidents.assess(session, stored)
            await session.commit()
            view = incidents.view(stored)
        if view["assessment"] != before:
            await self.notifier.send(incident_alert("incident-updated", view))
        return {**view, "copies": detail["copies"]}
