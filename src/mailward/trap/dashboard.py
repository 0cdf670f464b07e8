"""Threat tracking: the incidents and threats dashboards, and the trace section.

``incidents`` counts incidents by status and assessment and lists the
newest; ``threats`` is per campaign (one incident): recipients, delivered,
pulled, clicked and the click rate (clicked over delivered), the most
attacked people, indicators by source, and the time from delivery to pull.
``retractions`` is the section the message trace shows for one queue id.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from mailward.store.models import Copy, Incident, IncidentCopy, Indicator, Retraction

if TYPE_CHECKING:
    from mailward.store import Store

TOP = 20


async def incidents(store: "Store", hours: int = 24) -> dict[str, Any]:
    """incidents - incidents opened in the window: by status, by assessment, newest."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    async with store.session() as session:
        rows = (await session.scalars(select(Incident).where(Incident.opened_at >= since)
                                      .order_by(Incident.id.desc()))).all()
        still_open = await session.scalar(select(func.count()).select_from(Incident).where(
            Incident.status != "closed"))
    by_assessment = dict(Counter(r.assessment for r in rows))
    newest = [{"id": r.id, "title": r.title, "status": r.status,
               "assessment": r.assessment, "opened_at": r.opened_at.isoformat(),
               "copies": r.summary.get("copies", 0),
               "pulled": r.summary.get("pulled", 0)} for r in rows[:TOP]]
    sections = [
        {"title": "Incidents by assessment",
         "chart": {"type": "bar", "labels": list(by_assessment),
                   "datasets": [{"label": "incidents", "data": list(by_assessment.values())}]},
         "columns": ["assessment", "incidents"], "rows": list(by_assessment.items())},
        {"title": "Newest incidents",
         "columns": ["id", "title", "status", "assessment", "opened", "copies", "pulled"],
         "rows": [[{"text": str(n["id"]), "href": f"/console/incidents/{n['id']}"},
                   n["title"], n["status"], n["assessment"], n["opened_at"],
                   n["copies"], n["pulled"]] for n in newest]}]
    return {"hours": hours,
            "total": len(rows), "open_now": int(still_open or 0),
            "by_status": dict(Counter(r.status for r in rows)),
            "by_assessment": by_assessment, "newest": newest, "sections": sections}


async def threats(store: "Store", hours: int = 24) -> dict[str, Any]:
    """threats - campaigns, most attacked people, indicators by source, time to pull."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    async with store.session() as session:
        links = (await session.execute(
            select(Incident, IncidentCopy, Copy)
            .join(IncidentCopy, IncidentCopy.incident_id == Incident.id)
            .join(Copy, Copy.id == IncidentCopy.copy_id)
            .where(Incident.updated_at >= since))).all()
        sources = (await session.execute(
            select(Indicator.source, Indicator.type, func.count())
            .where(Indicator.added_at >= since)
            .group_by(Indicator.source, Indicator.type))).all()
    campaigns: dict[int, dict[str, Any]] = {}
    attacked: Counter[str] = Counter()
    delays = []
    for incident, link, copy in links:
        entry = campaigns.setdefault(incident.id, {
            "incident": incident.id, "title": incident.title,
            "assessment": incident.assessment, "status": incident.status,
            "recipients": set(), "delivered": 0, "pulled": 0,
            "clicked": set(incident.summary.get("clicked_recipients", []))})
        entry["recipients"].add(copy.recipient)
        entry["delivered"] += 1
        attacked[copy.recipient] += 1
        if link.pulled_at is not None:
            # A copy restored since is back in its mailbox: not counted as pulled.
            entry["pulled"] += link.restored_at is None
            delays.append((link.pulled_at - copy.delivered_at).total_seconds())
    out = []
    for entry in campaigns.values():
        clicked = len(entry["clicked"])
        out.append({**entry, "recipients": len(entry["recipients"]), "clicked": clicked,
                    "click_rate": round(clicked / entry["delivered"], 4)
                    if entry["delivered"] else 0.0})
    by_source: dict[str, dict[str, int]] = {}
    for source, kind, count in sources:
        by_source.setdefault(source, {})[kind] = int(count)
    campaigns = sorted(out, key=lambda c: -c["delivered"])[:TOP]
    sections = [
        {"title": "Campaigns",
         "columns": ["incident", "title", "assessment", "recipients", "delivered", "pulled",
                     "clicked", "click rate"],
         "rows": [[c["incident"], c["title"], c["assessment"], c["recipients"],
                   c["delivered"], c["pulled"], c["clicked"], f"{c['click_rate']:.1%}"]
                  for c in campaigns]},
        {"title": "Most attacked people", "columns": ["recipient", "copies"],
         "rows": [[r, n] for r, n in attacked.most_common(TOP)]},
        {"title": "Indicators by source", "columns": ["source", "type", "indicators"],
         "rows": [[source, kind, int(count)] for source, kind, count in sources]}]
    return {"hours": hours, "sections": sections,
            "campaigns": campaigns,
            "most_attacked": [{"recipient": r, "copies": n}
                              for r, n in attacked.most_common(TOP)],
            "indicators_by_source": by_source,
            "delivery_to_pull_seconds": {
                "count": len(delays),
                "median": round(median(delays), 3) if delays else None,
                "max": round(max(delays), 3) if delays else None}}


async def retractions(store: "Store", queue_id: str) -> tuple[str, list[dict[str, Any]]]:
    """retractions - the trace section: every pull and restore of the message's copies."""
    async with store.session() as session:
        rows = (await session.scalars(select(Retraction).where(
            Retraction.queue_id == queue_id).order_by(Retraction.id))).all()
    return "Retractions", [
        {"at": r.finished_at.isoformat() if r.finished_at else r.started_at.isoformat(),
         "recipient": r.recipient, "action": r.action, "status": r.status,
         "from": r.from_folder, "to": r.to_folder, "was_read": r.was_read,
         "attempts": r.attempts, "incident": r.incident_id, "by": r.actor,
         "reason": r.reason[:300], "error": r.error[:300]} for r in rows]
