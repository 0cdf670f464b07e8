"""Incidents: what a bad indicator found, what was pulled, and who clicked.

An incident is keyed by its indicator (``url:https://...``) or campaign
rule, so a retro-scan run twice updates it instead of opening another. Its
copies carry their pull (when, read or not); the click log of the URL
defence answers, per copy, whether the recipient clicked a link of it
before the pull, and whether a person or an automated scanner did. A human
click before the pull makes the incident "compromise suspected"; an
incident whose copies are all out of the mailboxes without one is
"contained"; copies still in mailboxes leave it "exposed". A copy an
analyst restored shows as "restored", with who and when, and counts as
judged safe, not as an exposure.

Analysts move an incident through open, investigating and closed; closing
needs a note, and every change is kept in its history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from mailward.intel.store import url_hash
from mailward.store.models import Click, Copy, Incident, IncidentCopy
from mailward.trap.lookup import CopyHit, Indicator

STATUSES = ("open", "investigating", "closed")
COMPROMISE = "compromise suspected"
CONTAINED = "contained"
EXPOSED = "exposed"
MAX_NOTE = 4000


class IncidentError(ValueError):
    """A workflow step that cannot be taken; the message says why."""


def _now() -> datetime:
    return datetime.now(UTC)


async def open_or_update(session, indicator: Indicator, hits: list[CopyHit],
                         title: str = "", kind: str = "indicator",
                         key: str | None = None) -> tuple[Incident, list[int]]:
    """open_or_update - the incident of an indicator, with any new copies; new ids."""
    key = key or indicator.key
    incident = await session.scalar(select(Incident).where(Incident.key == key))
    now = _now()
    if incident is None:
        incident = Incident(key=key[:512], title=(title or f"{indicator.category}: "
                                                  f"{indicator.type} {indicator.value}")[:500],
                            kind=kind, indicator_type=indicator.type,
                            indicator_value=indicator.value[:2048],
                            category=indicator.category, source=indicator.source[:128],
                            status="open", assessment="pending", opened_at=now,
                            updated_at=now, note="", summary={},
                            history=[{"at": now.isoformat(), "event": "opened"}])
        session.add(incident)
        await session.flush()
    known = set((await session.scalars(select(IncidentCopy.copy_id).where(
        IncidentCopy.incident_id == incident.id))).all())
    new = []
    for hit in hits:
        if hit.copy_id in known:
            continue
        known.add(hit.copy_id)
        session.add(IncidentCopy(incident_id=incident.id, copy_id=hit.copy_id,
                                 matched_on=hit.matched_on[:64], action="", found_at=now))
        new.append(hit.copy_id)
    if new:
        incident.updated_at = now
        if incident.status == "closed":
            # New copies reopen a closed incident: someone must look again.
            incident.status = "open"
            incident.history = [*incident.history, {"at": now.isoformat(),
                                                    "event": "reopened: new copies"}]
    return incident, new


async def record_pull(session, incident_id: int, copy_id: int, status: str,
                      was_read: bool | None) -> None:
    row = await session.scalar(select(IncidentCopy).where(
        IncidentCopy.incident_id == incident_id, IncidentCopy.copy_id == copy_id))
    if row is not None:
        mark_pull(row, status, was_read)


def mark_pull(row: IncidentCopy, status: str, was_read: bool | None) -> None:
    """mark_pull - what the pull of one copy did, on the incident's row for it."""
    row.action = status[:16]
    if was_read is not None:
        row.was_read = was_read
    if status == "pulled" and row.restored_at is not None:
        # Pulled again after a restore (an indicator new since): a pull of its own.
        row.pulled_at, row.restored_at, row.restored_by = _now(), None, ""
    if status in ("pulled", "already") and row.pulled_at is None:
        row.pulled_at = _now()


def _clicks_match(incident: Incident, click: Click) -> bool:
    """_clicks_match - whether a click on this copy is a click on the bad thing."""
    if incident.indicator_type == "url":
        return click.url_hash == url_hash(incident.indicator_value)
    if incident.indicator_type == "domain":
        host = (urlsplit(click.url).hostname or "").lower()
        value = incident.indicator_value
        return host == value or host.endswith("." + value)
    return True  # a bad attachment or sender: any link of the message counts


async def assess(session, incident: Incident) -> dict[str, Any]:
    """assess - copies, pulls and clicks of an incident; sets its assessment."""
    rows = (await session.execute(
        select(IncidentCopy, Copy).join(Copy, Copy.id == IncidentCopy.copy_id)
        .where(IncidentCopy.incident_id == incident.id).order_by(IncidentCopy.id))).all()
    copies = []
    human_before: list[dict[str, Any]] = []
    remaining = 0
    by_copy: dict[tuple[str, str], list[Click]] = {}
    queue_ids = sorted({copy.queue_id for _, copy in rows})
    for start in range(0, len(queue_ids), 500):
        for click in (await session.scalars(select(Click).where(
                Click.queue_id.in_(queue_ids[start:start + 500]))
                .order_by(Click.clicked_at))).all():
            by_copy.setdefault((click.queue_id, click.recipient.lower()), []).append(click)
    for link, copy in rows:
        seen = []
        for click in by_copy.get((copy.queue_id, copy.recipient.lower()), []):
            if not _clicks_match(incident, click):
                continue
            before = link.pulled_at is None or click.clicked_at <= link.pulled_at
            entry = {"at": click.clicked_at.isoformat(), "url": click.url[:2000],
                     "human": not click.automated, "before_pull": before,
                     "client_ip": click.client_ip, "user_agent": click.user_agent[:300],
                     "scanner_reason": click.automated_reason[:300]}
            seen.append(entry)
            if before and not click.automated:
                human_before.append({"recipient": copy.recipient, **entry})
        out_of_reach = copy.state in ("retracted", "gone") or link.action in ("pulled",
                                                                             "already", "gone")
        # A copy an analyst restored was judged safe: it is not an exposure.
        if not out_of_reach and link.action not in ("exempt", "kept", "restored"):
            remaining += 1
        copies.append({"copy_id": copy.id, "queue_id": copy.queue_id,
                       "recipient": copy.recipient, "subject": copy.subject[:300],
                       "sender": copy.sender, "folder": copy.folder, "state": copy.state,
                       "delivered_at": copy.delivered_at.isoformat(),
                       "pulled_at": link.pulled_at.isoformat() if link.pulled_at else None,
                       "pull": link.action, "was_read": link.was_read,
                       "restored_at": (link.restored_at.isoformat() if link.restored_at
                                       else None),
                       "restored_by": link.restored_by,
                       "matched_on": link.matched_on, "via": copy.via,
                       "clicks": seen})
    if human_before:
        assessment = COMPROMISE
    elif remaining:
        assessment = EXPOSED
    else:
        assessment = CONTAINED
    summary = {
        "copies": len(copies),
        "recipients": len({c["recipient"] for c in copies}),
        "pulled": sum(1 for c in copies if c["pulled_at"] and not c["restored_at"]),
        "restored": sum(1 for c in copies if c["restored_at"]),
        "read": sum(1 for c in copies if c["was_read"]),
        "failed": sum(1 for c in copies if c["pull"] == "failed"),
        "clicks_before_pull": sum(1 for c in copies for k in c["clicks"] if k["before_pull"]),
        "clicks_after_pull": sum(1 for c in copies for k in c["clicks"]
                                 if not k["before_pull"]),
        "human_clicks_before_pull": human_before,
        "clicked_recipients": sorted({c["recipient"] for c in copies
                                      if any(k["human"] for k in c["clicks"])}),
    }
    if assessment != incident.assessment:
        incident.history = [*incident.history, {"at": _now().isoformat(),
                                                "event": f"assessed: {assessment}"}]
    incident.assessment = assessment
    incident.summary = summary
    incident.updated_at = _now()
    return {"summary": summary, "copies": copies}


async def set_status(session, incident_id: int, status: str, note: str = "",
                     actor: str = "") -> Incident:
    """set_status - one workflow step: open, investigating or closed (with a note)."""
    if status not in STATUSES:
        raise IncidentError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident {incident_id}")
    note = note.strip()
    if status == "closed" and not note:
        raise IncidentError("closing an incident needs a note saying why")
    if len(note) > MAX_NOTE:
        raise IncidentError(f"the note is longer than {MAX_NOTE} characters")
    now = _now()
    incident.status = status
    incident.updated_at = now
    incident.closed_at = now if status == "closed" else None
    if note:
        incident.note = note
    incident.history = [*incident.history, {"at": now.isoformat(), "event": status,
                                            "actor": actor[:200], "note": note}]
    return incident


def view(incident: Incident) -> dict[str, Any]:
    """view - the incident as the API and the alerts show it."""
    return {"id": incident.id, "key": incident.key, "title": incident.title,
            "kind": incident.kind,
            "indicator": {"type": incident.indicator_type, "value": incident.indicator_value,
                          "category": incident.category, "source": incident.source},
            "status": incident.status, "assessment": incident.assessment,
            "opened_at": incident.opened_at.isoformat(),
            "updated_at": incident.updated_at.isoformat(),
            "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
            "note": incident.note, "summary": incident.summary, "history": incident.history}
