"""Message trace: find any message, and show its whole decision on one page.

Search by sender, recipient, subject, Message-ID, queue id, peer IP,
action, category and time. One message's trace holds the envelope, each
check's findings with evidence, the policy step that chose the action
(``reason``), every delivery attempt, each delivered copy and what later
became of it (retracted, restored), the quarantine record with its release
requests, clicks on its links, and the audit entries that name it. Other
areas add sections through ``TRACE_SECTIONS`` (``module:function`` taking
the store and the queue id and returning a title and rows).

SECURITY: every search value is bound as a parameter, and LIKE wildcards in
it are escaped, so a search field is never SQL; pages are capped.
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime
from typing import Any, Awaitable, Callable, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import Text, cast, func, or_, select

from mailward.quarantine import item_dict
from mailward.store import Store
from mailward.store.models import (
    AuditEntry,
    Click,
    Copy,
    Delivery,
    MessageRecord,
    QuarantineItem,
)
from mailward.web.audit import entry_dict
from mailward.web.deps import Principal, get_gateway, require

log = logging.getLogger("mailward.web")
router = APIRouter(prefix="/api/v1/trace", tags=["trace"])
MAX_PAGE = 200
MAX_OFFSET = 1_000_000

# Sections other areas add to a trace: module:function(store, queue_id) -> (title, rows).
TRACE_SECTIONS: list[str] = [
    "mailward.trap.dashboard:retractions",
    "mailward.reports.trace:section",
]


def like(text: str) -> str:
    """like - a LIKE pattern that matches text literally anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_query(*, sender: str | None = None, recipient: str | None = None,
                 subject: str | None = None, message_id: str | None = None,
                 queue_id: str | None = None, peer_ip: str | None = None,
                 action: str | None = None, category: str | None = None,
                 since: datetime | None = None, until: datetime | None = None):
    """search_query - the SELECT of messages matching every given field."""
    query = select(MessageRecord)
    if sender:
        pattern = like(sender.lower())
        query = query.where(or_(func.lower(MessageRecord.mail_from).like(pattern, escape="\\"),
                                func.lower(MessageRecord.header_from).like(pattern,
                                                                           escape="\\")))
    if recipient:
        query = query.where(func.lower(cast(MessageRecord.recipients, Text))
                            .like(like(recipient.lower()), escape="\\"))
    if subject:
        query = query.where(func.lower(MessageRecord.subject).like(like(subject.lower()),
                                                                   escape="\\"))
    if message_id:
        query = query.where(MessageRecord.message_id.like(like(message_id.strip()),
                                                          escape="\\"))
    if queue_id:
        query = query.where(MessageRecord.queue_id == queue_id.strip())
    if peer_ip:
        query = query.where(MessageRecord.peer_ip == peer_ip.strip())
    if action:
        query = query.where(MessageRecord.action == action)
    if category:
        query = query.where(MessageRecord.category == category)
    if since:
        query = query.where(MessageRecord.received_at >= since)
    if until:
        query = query.where(MessageRecord.received_at < until)
    return query


def record_dict(record: MessageRecord) -> dict[str, Any]:
    return {"queue_id": record.queue_id, "received_at": record.received_at.isoformat(),
            "direction": record.direction, "peer_ip": record.peer_ip, "helo": record.helo,
            "mail_from": record.mail_from, "header_from": record.header_from,
            "recipients": record.recipients, "subject": record.subject,
            "message_id": record.message_id, "size": record.size, "action": record.action,
            "category": record.category, "score": record.score, "reason": record.reason,
            "state": record.state}


async def search(store: Store, limit: int, offset: int, **fields: Any
                 ) -> tuple[list[MessageRecord], int]:
    """search - one page of matching messages, newest first, and the total."""
    query = search_query(**fields)
    async with store.session() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await session.scalars(query.order_by(MessageRecord.received_at.desc(),
                                                    MessageRecord.id.desc())
                                     .limit(limit).offset(offset))
        return list(rows.all()), int(total or 0)


def _delivery(row: Delivery) -> dict[str, Any]:
    return {"recipient": row.recipient, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": row.last_error,
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "folder": row.folder, "route": row.route}


def _copy(row: Copy) -> dict[str, Any]:
    return {"recipient": row.recipient, "mailbox": row.mailbox, "folder": row.folder,
            "native_id": row.native_id, "delivered_at": row.delivered_at.isoformat(),
            "state": row.state}


def _click(row: Click) -> dict[str, Any]:
    return {"recipient": row.recipient, "url": row.url, "clicked_at": row.clicked_at.isoformat(),
            "client_ip": row.client_ip, "verdict": row.verdict, "reason": row.reason,
            "automated": row.automated, "automated_reason": row.automated_reason}


async def trace(store: Store, queue_id: str) -> dict[str, Any] | None:
    """trace - everything known about one message, or None."""
    async with store.session() as session:
        record = await session.scalar(select(MessageRecord).where(
            MessageRecord.queue_id == queue_id))
        if record is None:
            return None
        deliveries = (await session.scalars(select(Delivery).where(
            Delivery.queue_id == queue_id).order_by(Delivery.id))).all()
        copies = (await session.scalars(select(Copy).where(
            Copy.queue_id == queue_id).order_by(Copy.id))).all()
        clicks = (await session.scalars(select(Click).where(
            Click.queue_id == queue_id).order_by(Click.clicked_at).limit(500))).all()
        held = (await session.scalars(select(QuarantineItem).where(
            QuarantineItem.queue_id == queue_id))).all()
        targets = [queue_id, *(item.id for item in held)]
        audits = (await session.scalars(select(AuditEntry).where(
            AuditEntry.target.in_(targets)).order_by(AuditEntry.id).limit(500))).all()
    verdict = record.verdict or {}
    return {"message": record_dict(record), "envelope": record.envelope,
            "verdict": verdict, "findings": verdict.get("findings", []),
            "released_by": verdict.get("released_by"),
            "deliveries": [_delivery(d) for d in deliveries],
            "copies": [_copy(c) for c in copies], "clicks": [_click(c) for c in clicks],
            "quarantine": [item_dict(item) for item in held],
            "audit": [entry_dict(a) for a in audits],
            "sections": await _sections(store, queue_id)}


async def _sections(store: Store, queue_id: str) -> list[dict[str, Any]]:
    """_sections - what the other areas add to the trace of one message."""
    sections = []
    for path in TRACE_SECTIONS:
        module, _, attribute = path.partition(":")
        try:
            provider: Callable[[Store, str], Awaitable[tuple[str, list[dict]]]] = getattr(
                importlib.import_module(module), attribute)
            title, rows = await provider(store, queue_id)
        except Exception:
            log.exception("trace section %s failed for %s", path, queue_id)
            continue
        sections.append({"title": title, "rows": rows})
    return sections


Verdicts = Literal["deliver", "tag", "quarantine", "reject"]
Categories = Literal["spam", "phish", "malware", "impostor", "auth", "policy"]


@router.get("", summary="Search every message")
async def search_messages(
        request: Request, sender: str | None = Query(None, max_length=320),
        recipient: str | None = Query(None, max_length=320),
        subject: str | None = Query(None, max_length=500),
        message_id: str | None = Query(None, max_length=998),
        queue_id: str | None = Query(None, max_length=32),
        peer_ip: str | None = Query(None, max_length=64),
        action: Verdicts | None = None, category: Categories | None = None,
        since: datetime | None = None, until: datetime | None = None,
        limit: int = Query(50, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0, le=MAX_OFFSET),
        principal: Principal = Depends(require("trace:read"))) -> dict[str, Any]:
    rows, total = await search(get_gateway(request).services.store, limit, offset,
                               sender=sender, recipient=recipient, subject=subject,
                               message_id=message_id, queue_id=queue_id, peer_ip=peer_ip,
                               action=action, category=category, since=since, until=until)
    return {"total": total, "limit": limit, "offset": offset,
            "items": [record_dict(r) for r in rows]}


@router.get("/{queue_id}", summary="The whole decision on one message")
async def show_trace(request: Request, queue_id: str,
                     principal: Principal = Depends(require("trace:read"))) -> dict[str, Any]:
    found = await trace(get_gateway(request).services.store, queue_id[:32])
    if found is None:
        raise HTTPException(404, f"no message with queue id {queue_id[:32]!r}")
    return found
