"""The quarantine: messages held for review, released or deleted.

A quarantined message keeps its original bytes in the data directory and one
row in the store. Release delivers the original to its recipients through
the delivery queue, with the verdict headers and a note of who released it;
delete removes the bytes and keeps the record for the message trace. The CLI,
the REST API and the expiry of old items (``mailward.retention``) all work
through this module. Releasing as "not spam"
teaches the spam model at once that the message is ham
(``content.learn``), which also keeps a copy of the original under
``feedback/ham`` in the data directory for the next full training.

A delivered copy pulled out of its mailbox (``trap.retract_mode = "hold"``)
is an item of its own: its bytes, as they were in the mailbox, are under
``quarantine/pulled/ITEM.eml`` and the row names the copy and incident.
Releasing it puts it back into the mailbox folder it came from, as itself
(same bytes, same flags), through the retraction service; it never goes
through the delivery queue again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import false, func, or_, select

from mailward.mailbox.base import INBOX
from mailward.store.models import (Copy, Delivery, MessageRecord, QuarantineItem,
                                   ReleaseRequest)

if TYPE_CHECKING:
    from mailward.gateway import Gateway


class QuarantineError(Exception):
    """A quarantine operation that cannot be done; the text says why."""


def new_quarantine_id() -> str:
    """new_quarantine_id - a random, alphanumeric item id."""
    return secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


def pulled_path(data_dir: Path, item_id: str) -> Path:
    """pulled_path - where the bytes of a copy held after a pull are kept."""
    if not item_id.isalnum():
        raise QuarantineError(f"bad quarantine id {item_id!r}")
    return data_dir / "quarantine" / "pulled" / f"{item_id}.eml"


@dataclass(frozen=True, slots=True)
class Filters:
    category: str | None = None
    recipient: str | None = None
    sender: str | None = None
    status: str | None = "held"
    since: datetime | None = None
    until: datetime | None = None
    # Only items addressed to one of these (lower-case) addresses, when given.
    owner: tuple[str, ...] | None = None


def item_dict(item: QuarantineItem) -> dict[str, Any]:
    return {"id": item.id, "queue_id": item.queue_id,
            "created_at": item.created_at.isoformat(), "category": item.category,
            "reason": item.reason, "sender": item.sender, "recipients": item.recipients,
            "subject": item.subject, "size": item.size, "status": item.status,
            "released_at": item.released_at.isoformat() if item.released_at else None,
            "released_by": item.released_by, "pulled": item.copy_id is not None,
            "copy_id": item.copy_id, "incident_id": item.incident_id,
            "origin_folder": item.origin_folder}


class Quarantine:
    """List, show, release and delete quarantined messages."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.store = gateway.services.store

    async def list(self, filters: Filters = Filters(), limit: int = 50,
                   offset: int = 0) -> tuple[list[QuarantineItem], int]:
        """list - one page of items, newest first, and the total matching."""
        query = select(QuarantineItem)
        if filters.status:
            query = query.where(QuarantineItem.status == filters.status)
        if filters.category:
            query = query.where(QuarantineItem.category == filters.category)
        if filters.sender:
            query = query.where(QuarantineItem.sender.ilike(f"%{_like(filters.sender)}%",
                                                            escape="\\"))
        if filters.recipient:
            query = query.where(func.lower(func.cast(QuarantineItem.recipients, _text()))
                                .like(f"%{_like(filters.recipient.lower())}%", escape="\\"))
        if filters.owner is not None:
            recipients = func.lower(func.cast(QuarantineItem.recipients, _text()))
            needles = [f"%{_like(json.dumps(a.lower()))}%" for a in filters.owner]
            query = query.where(or_(*(recipients.like(n, escape="\\") for n in needles))
                                if needles else false())
        if filters.since:
            query = query.where(QuarantineItem.created_at >= filters.since)
        if filters.until:
            query = query.where(QuarantineItem.created_at < filters.until)
        async with self.store.session() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(query.order_by(QuarantineItem.created_at.desc())
                                         .limit(limit).offset(offset))
            return list(rows.all()), int(total or 0)

    async def get(self, item_id: str) -> QuarantineItem:
        async with self.store.session() as session:
            item = await session.get(QuarantineItem, item_id)
        if item is None:
            raise QuarantineError(f"no quarantined message {item_id!r}")
        return item

    async def verdict(self, item: QuarantineItem) -> dict[str, Any]:
        async with self.store.session() as session:
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == item.queue_id))
        return record.verdict if record else {}

    def raw(self, item: QuarantineItem) -> bytes:
        """raw - the original message as received (with our trace header)."""
        if item.copy_id is not None:
            path = pulled_path(self.gateway.settings.data_dir, item.id)
            if not path.exists():
                raise QuarantineError(f"the bytes of {item.id} are gone (deleted or restored)")
            return path.read_bytes()
        path = self.gateway.spool.held(item.queue_id)
        if not path.exists():
            raise QuarantineError(f"the bytes of {item.id} are gone (deleted or released)")
        return self.gateway.spool.read(path)[1]

    async def release(self, item_id: str, by: str, not_spam: bool = False) -> QuarantineItem:
        """release - deliver the original to its recipients (and learn it as ham)."""
        item = await self.get(item_id)
        if item.status != "held":
            raise QuarantineError(f"{item_id} is {item.status}, not held")
        if item.copy_id is not None:
            return await self._restore_pulled(item, by)
        spool = self.gateway.spool
        source = spool.held(item.queue_id)
        if not source.exists():
            raise QuarantineError(f"the bytes of {item_id} are gone")
        if not_spam:
            from mailward.content.learn import learn

            _, data = await asyncio.to_thread(spool.read, source)
            await asyncio.to_thread(learn, self.gateway.services, data, "ham",
                                    name=item.queue_id)
        await asyncio.to_thread(spool.unhold, item.queue_id)
        now = datetime.now(UTC)
        async with self.store.session() as session:
            stored = await session.get(QuarantineItem, item_id)
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == item.queue_id))
            stored.status, stored.released_at, stored.released_by = "released", now, by
            await close_requests(session, item_id, f"released by {by}", by, now)
            verdict = dict(record.verdict)
            verdict["released_by"] = by
            record.verdict = verdict
            record.state = "queued"
            existing = {row.recipient for row in (await session.scalars(select(Delivery).where(
                Delivery.queue_id == item.queue_id))).all()}
            for recipient in self.gateway.expand(list(item.recipients), item.queue_id):
                if recipient.address not in existing:
                    session.add(Delivery(queue_id=item.queue_id, recipient=recipient.address,
                                         status="pending", attempts=0, next_attempt_at=now,
                                         folder=INBOX, route="inbound",
                                         via=recipient.via[:320]))
            await session.commit()
            item = stored
        if self.gateway.queue is not None:
            self.gateway.queue.wake()
        return item

    async def _restore_pulled(self, item: QuarantineItem, by: str) -> QuarantineItem:
        """_restore_pulled - a held copy back into its mailbox, as itself."""
        from mailward.mailbox.retract import Retractor

        retractor = Retractor.from_settings(self.gateway.settings, self.store)
        result = await retractor.restore(item.copy_id, f"released from the quarantine by {by}",
                                         actor=by)
        if not result.ok:
            raise QuarantineError(f"{item.id} could not be put back into the mailbox of "
                                  f"{result.recipient}: {result.status} {result.error}")
        return await self.get(item.id)

    def feedback_path(self, kind: str, queue_id: str):
        """feedback_path - where a message people judged is kept for training."""
        folder = self.gateway.settings.data_dir / "feedback" / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{queue_id}.eml"

    async def delete(self, item_id: str, by: str, why: str = "") -> QuarantineItem:
        """delete - remove the bytes, keep the record; why closes pending requests
        (default: "deleted by BY")."""
        item = await self.get(item_id)
        if item.status == "released":
            raise QuarantineError(f"{item_id} was released; nothing to delete")
        if item.copy_id is not None:
            pulled_path(self.gateway.settings.data_dir, item.id).unlink(missing_ok=True)
        else:
            self.gateway.spool.held(item.queue_id).unlink(missing_ok=True)
        async with self.store.session() as session:
            stored = await session.get(QuarantineItem, item_id)
            now = datetime.now(UTC)
            stored.status, stored.released_at, stored.released_by = "deleted", now, by
            await close_requests(session, item_id, why or f"deleted by {by}", by, now)
            if item.copy_id is not None:
                # One pulled copy is gone for good; the message and its other copies stay.
                copy = await session.get(Copy, item.copy_id)
                if copy is not None:
                    copy.state = "gone"
                await session.commit()
                return stored
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == item.queue_id))
            if record is not None:
                record.state = "deleted"
            await session.commit()
            return stored


async def close_requests(session: Any, item_id: str, reason: str, by: str,
                         now: datetime) -> None:
    """close_requests - close the pending release requests of an item that left the
    quarantine, so that no reviewer is asked to decide on it (in the caller's session)."""
    rows = await session.scalars(select(ReleaseRequest).where(
        ReleaseRequest.quarantine_id == item_id, ReleaseRequest.status == "pending"))
    for row in rows.all():
        row.status, row.reason = "closed", reason[:300]
        row.decided_by, row.decided_at = by[:200], now


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text():
    from sqlalchemy import Text

    return Text()
