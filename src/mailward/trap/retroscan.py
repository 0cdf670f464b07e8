"""Retro-scan: new intelligence against what was already delivered.

Every change of the intelligence store moves its generation; the trap
service then queues a scan of the indicators added or refreshed since the
last one (a watermark in ``meta``). For each indicator the message index
gives the copies delivered within ``trap.lookback`` that carry it; each hit
opens or updates an incident; the category's rule decides the pull (malware
and phishing read or unread, spam only while unread, by default); copies in
``trap.exempt_mailboxes`` are never touched. Then the click log decides the
incident's assessment and the SOC is alerted.

An indicator that matches more than ``trap.max_share`` of the window is
refused (a bare common domain would empty every mailbox) unless forced;
the refusal is an alert of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from mailward.mailbox.base import QUARANTINE
from mailward.mailbox.retract import FAILED, PullResult, Retractor
from mailward.store.models import ForcedIndicator, Incident, Indicator as IndicatorRow, Meta
from mailward.trap import incidents
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

    def as_dict(self) -> dict[str, Any]:
        return {"indicators": self.indicators, "matched_copies": self.matched_copies,
                "pulled": self.pulled, "failed": self.failed,
                "refused": [{"indicator": o.indicator.key, "reason": o.refused}
                            for o in self.refused],
                "incidents": self.incidents, "seconds": round(self.seconds, 3)}


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
        """pending - unexpired indicators added or refreshed since the watermark."""
        now = now or datetime.now(UTC)
        async with self.store.session() as session:
            mark = await session.scalar(select(Meta.value).where(Meta.key == WATERMARK_KEY))
            since = (datetime.fromtimestamp(mark / 1e6, UTC) - OVERLAP if mark
                     else datetime.fromtimestamp(0, UTC))
            rows = (await session.execute(
                select(IndicatorRow.type, IndicatorRow.value, IndicatorRow.category,
                       IndicatorRow.source, IndicatorRow.confidence, IndicatorRow.added_at)
                .where(IndicatorRow.added_at > since,
                       or_(IndicatorRow.expires_at.is_(None), IndicatorRow.expires_at > now))
            )).all()
        newest = max((row.added_at for row in rows), default=since + OVERLAP)
        return [Indicator(r.type, r.value, r.category, r.source, r.confidence)
                for r in rows], newest

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
        await self.advance(newest)
        return report

    async def run_all(self, force: Iterable[str] = ()) -> ScanReport:
        """run_all - scan every unexpired indicator (``mailward trap run --all``)."""
        now = datetime.now(UTC)
        async with self.store.session() as session:
            rows = (await session.execute(
                select(IndicatorRow.type, IndicatorRow.value, IndicatorRow.category,
                       IndicatorRow.source, IndicatorRow.confidence)
                .where(or_(IndicatorRow.expires_at.is_(None), IndicatorRow.expires_at > now))
            )).all()
        return await self.scan([Indicator(*row) for row in rows], force=force)

    # One scan.

    async def scan(self, indicators: Iterable[Indicator], force: Iterable[str] = (),
                   now: datetime | None = None) -> ScanReport:
        started = time.monotonic()
        now = now or datetime.now(UTC)
        items = list({i.key: i for i in indicators}.values())
        report = ScanReport(indicators=len(items))
        if not items:
            return report
        async with self.store.session() as session:
            forced = set(force) | set((await session.scalars(
                select(ForcedIndicator.key))).all())
            lookup = IndexLookup.window(session, now, self.settings.trap.lookback)
            found = await lookup.find(items)
            total = await lookup.total() if found else 0
        for indicator, hits in found.items():
            outcome = IndicatorOutcome(indicator, matched=len(hits))
            reason = "" if indicator.key in forced else too_common(len(hits), total,
                                                                   self.settings)
            if reason:
                outcome.refused = reason
                report.refused.append(outcome)
                log.warning("retro-scan refused %s: %s", indicator.key, reason)
                await self.notifier.send({
                    "event": "indicator-refused", "title": f"refused {indicator.key}",
                    "assessment": "refused", "text": f"{indicator.key} {reason}",
                    "incident": {"id": "", "indicator": {"type": indicator.type,
                                                         "value": indicator.value},
                                 "summary": {}}})
                continue
            await self._handle(indicator, hits, outcome, report)
            report.outcomes.append(outcome)
        report.seconds = time.monotonic() - started
        log.info("retro-scan: %d indicators, %d copies matched, %d pulled, %d failed, "
                 "%d refused in %.2fs", report.indicators, report.matched_copies,
                 report.pulled, report.failed, len(report.refused), report.seconds)
        return report

    async def _handle(self, indicator: Indicator, hits: list[CopyHit],
                      outcome: IndicatorOutcome, report: ScanReport) -> None:
        """_handle - one indicator's hits: incident, pulls, assessment, alert."""
        async with self.store.session() as session:
            incident, new = await incidents.open_or_update(session, indicator, hits)
            await session.commit()
            incident_id = incident.id
        outcome.incident_id = incident_id
        report.incidents.append(incident_id)
        report.matched_copies += len(hits)
        rule = pull_rule(self.settings, indicator.category)
        # Copies already out of the mailboxes are not asked again.
        todo = [hit for hit in hits if hit.state not in ("retracted", "gone")]
        results: list[PullResult] = []
        if rule != "never" and todo:
            results = await self.retractor.move_all(
                [hit.copy_id for hit in todo], QUARANTINE,
                f"{indicator.category} indicator {indicator.key} ({indicator.source})",
                incident_id=incident_id, actor="retro-scan", only_unread=rule == "unread")
            report.last_pull_at = time.monotonic()
        async with self.store.session() as session:
            for result in results:
                outcome.pulls[result.status] = outcome.pulls.get(result.status, 0) + 1
                await incidents.record_pull(session, incident_id, result.copy_id,
                                            result.status, result.was_read)
            for hit in hits:
                if hit.state in ("retracted", "gone"):
                    await incidents.record_pull(session, incident_id, hit.copy_id,
                                                "already" if hit.state == "retracted"
                                                else "gone", None)
            stored = await session.get(Incident, incident_id)
            before = stored.assessment
            await incidents.assess(session, stored)
            await session.commit()
            view = incidents.view(stored)
        report.pulled += outcome.pulls.get("pulled", 0)
        report.failed += outcome.pulls.get(FAILED, 0)
        if new or view["assessment"] != before:
            event = "incident-opened" if before == "pending" else "incident-updated"
            await self.notifier.send(incident_alert(event, view))

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
