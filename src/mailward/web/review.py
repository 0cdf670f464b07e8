"""Quarantine review with permissions: what one principal may see and do.

The REST API, the console pages and the digest links all act through
``Review``, so a rule holds everywhere: staff (admin, analyst) see and act
on everything; a user sees only items addressed to one of their addresses,
may release, delete or judge only items addressed to nobody else, and may
only *request* the release of malware and phishing, which staff approve.
Every action and every refusal goes to the audit log.

SECURITY: an item another user owns answers 404, as an unknown id does, so
guessing ids tells nothing; the guess is logged and audited. The message
view never returns the HTML of a message: it returns the text a reader
would see (``Message.text``), its headers decoded, and its files listed,
all as data for an escaping template or a JSON client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mailward.config import Settings
from mailward.quarantine import Filters, Quarantine, QuarantineError, item_dict
from mailward.store.models import QuarantineItem, ReleaseRequest, User
from mailward.web import audit
from mailward.web.deps import Principal
from mailward.web.senders import SenderRuleError, rules_of

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")

CATEGORIES = ("spam", "phish", "malware", "impostor", "policy", "auth")


# TODO: without a language model trained by the site, phishing seldom reaches the
# phish tag threshold and is held as spam, which end users may release under the
# default web.user_release; the web service warns at start, but such phishing can
# still be released by the user it targets.
def user_may_release(settings: Settings, category: str) -> bool:
    """user_may_release - whether an end user may release held mail of this category
    themselves (``web.user_release``); otherwise they can only ask staff."""
    return category != "malware" and category in settings.web.user_release


ACTIONS = ("release", "release_allow", "not_spam", "allow_sender", "block_sender",
           "delete", "request_release")
MAX_BODY_CHARS = 200_000
MAX_HEADERS = 300


class ReviewError(Exception):
    """A refused or impossible review action, with the HTTP status that says so."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def decoded(value: str) -> str:
    """decoded - a header value with its RFC 2047 encoded words decoded."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError, AssertionError, TypeError,
            HeaderParseError):
        return value


@dataclass
class MessageView:
    """What the console shows of one quarantined message."""

    item: dict[str, Any]
    verdict: dict[str, Any]
    headers: list[tuple[str, str]]
    body: str
    body_note: str
    files: list[dict[str, Any]]
    requests: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {**self.item, "verdict": self.verdict,
                "headers": [{"name": n, "value": v} for n, v in self.headers],
                "body_text": self.body, "body_note": self.body_note, "files": self.files,
                "release_requests": self.requests}


def request_dict(row: ReleaseRequest, username: str = "") -> dict[str, Any]:
    return {"id": row.id, "quarantine_id": row.quarantine_id, "user": username,
            "requested_at": row.requested_at.isoformat(), "comment": row.comment,
            "status": row.status, "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "reason": row.reason}


class Review:
    """The quarantine as one principal may see and change it."""

    def __init__(self, gateway: "Gateway", principal: Principal) -> None:
        self.gateway = gateway
        self.principal = principal
        self.quarantine = Quarantine(gateway)
        self.store = gateway.services.store

    async def _audit(self, action: str, target: str, outcome: str = "ok", **detail: Any) -> None:
        p = self.principal
        await audit.record(self.store, p.name, p.role, action, target, ip=p.ip,
                           outcome=outcome, **detail)

    # Reading.

    def scoped(self, filters: Filters) -> Filters:
        """scoped - filters narrowed to the principal's own mail when not staff."""
        if self.principal.staff:
            return filters
        return Filters(filters.category, filters.recipient, filters.sender, filters.status,
                       filters.since, filters.until, tuple(sorted(self.principal.addresses)))

    async def list(self, filters: Filters, limit: int, offset: int
                   ) -> tuple[list[QuarantineItem], int]:
        return await self.quarantine.list(self.scoped(filters), limit, offset)

    async def get(self, item_id: str) -> QuarantineItem:
        """get - an item the principal may see; 404 for others' and unknown ids."""
        try:
            item = await self.quarantine.get(item_id[:64])
        except QuarantineError:
            raise ReviewError(404, f"no quarantined message {item_id[:64]!r}") from None
        if not self.principal.sees(item.recipients):
            log.warning("refused quarantine item %s to %s from %s: not addressed to them",
                        item.id, self.principal.name, self.principal.ip or "-")
            await self._audit("quarantine.view", item.id, "refused",
                              why="not addressed to this user")
            raise ReviewError(404, f"no quarantined message {item_id[:64]!r}")
        return item

    async def view(self, item_id: str) -> MessageView:
        """view - the item, its verdict, decoded headers, readable text and files."""
        item = await self.get(item_id)
        verdict = await self.quarantine.verdict(item)
        headers: list[tuple[str, str]] = []
        body, note, files = "", "", []
        try:
            raw = await asyncio.to_thread(self.quarantine.raw, item)
        except QuarantineError as error:
            note = str(error)
        else:
            message = await asyncio.to_thread(self.gateway.parse, raw)
            headers, body, files = await asyncio.to_thread(_readable, message, verdict)
            if len(body) > MAX_BODY_CHARS:
                body, note = body[:MAX_BODY_CHARS], f"text cut at {MAX_BODY_CHARS} characters"
        return MessageView(item_dict(item), verdict, headers, body, note, files,
                           await self.requests_of(item.id))

    async def requests_of(self, item_id: str) -> list[dict[str, Any]]:
        async with self.store.session() as session:
            rows = (await session.execute(
                select(ReleaseRequest, User.username).join(User, User.id == ReleaseRequest.user_id)
                .where(ReleaseRequest.quarantine_id == item_id)
                .order_by(ReleaseRequest.id))).all()
        return [request_dict(row, name) for row, name in rows]

    # Acting.

    def _owns_all(self, item: QuarantineItem) -> bool:
        return all(r.lower() in self.principal.addresses for r in item.recipients)

    async def _may_change(self, item: QuarantineItem, action: str) -> None:
        """_may_change - refuse a user acting on mail that is also someone else's."""
        if self.principal.staff or self._owns_all(item):
            return
        await self._audit(f"quarantine.{action}", item.id, "refused",
                          why="addressed to others as well")
        raise ReviewError(403, "this message is addressed to others as well; "
                          "ask an administrator")

    async def release(self, item_id: str, *, allow_sender: bool = False,
                      not_spam: bool = False) -> dict[str, Any]:
        """release - deliver the item (users: not malware or phishing)."""
        item = await self.get(item_id)
        action = "not_spam" if not_spam else "release_allow" if allow_sender else "release"
        if not self.principal.staff and not user_may_release(self.gateway.settings,
                                                             item.category):
            await self._audit(f"quarantine.{action}", item.id, "refused",
                              why=f"{item.category} needs staff approval")
            raise ReviewError(403, f"a {item.category} message can only be released by an "
                              "administrator; request its release instead")
        await self._may_change(item, action)
        if allow_sender:
            await self._rule("allow", item)
        try:
            released = await self.quarantine.release(item.id, by=self.principal.name,
                                                     not_spam=not_spam)
        except QuarantineError as error:
            raise ReviewError(409, str(error)) from None
        await self._audit(f"quarantine.{action}", item.id, queue_id=item.queue_id,
                          category=item.category)
        return item_dict(released)

    async def delete(self, item_id: str) -> dict[str, Any]:
        item = await self.get(item_id)
        await self._may_change(item, "delete")
        try:
            deleted = await self.quarantine.delete(item.id, by=self.principal.name)
        except QuarantineError as error:
            raise ReviewError(409, str(error)) from None
        await self._audit("quarantine.delete", item.id, queue_id=item.queue_id)
        return item_dict(deleted)

    async def _rule(self, kind: str, item: QuarantineItem) -> list[str]:
        """_rule - add the sender rule for this item: global for staff, own for users."""
        rules = rules_of(self.gateway.services)
        targets = [""] if self.principal.staff else sorted(
            {r.lower() for r in item.recipients} & self.principal.addresses)
        try:
            for recipient in targets:
                await rules.add(kind, item.sender, recipient, self.principal.name)
        except SenderRuleError as error:
            raise ReviewError(422, str(error)) from None
        await self._audit(f"sender.{kind}", item.sender, item=item.id,
                          recipients=targets or ["everyone"])
        return targets

    async def sender_rule(self, item_id: str, kind: str) -> dict[str, Any]:
        """sender_rule - allow or block the sender of an item (users: allow only
        where they may release the item themselves)."""
        item = await self.get(item_id)
        if (kind == "allow" and not self.principal.staff
                and not user_may_release(self.gateway.settings, item.category)):
            await self._audit("sender.allow", item.sender, "refused", item=item.id,
                              why=f"{item.category} needs staff approval")
            raise ReviewError(403, f"the sender of a {item.category} message can only be "
                              "allowed by an administrator")
        targets = await self._rule(kind, item)
        return {"sender": item.sender, "kind": kind,
                "recipients": [t or "*" for t in targets]}

    async def request_release(self, item_id: str, comment: str = "") -> dict[str, Any]:
        """request_release - ask staff to release an item (one open request per user)."""
        item = await self.get(item_id)
        if item.status != "held":
            raise ReviewError(409, f"{item.id} is {item.status}, not held")
        if self.principal.user_id is None:
            raise ReviewError(422, "only console users request releases")
        async with self.store.session() as session:
            row = await session.scalar(select(ReleaseRequest).where(
                ReleaseRequest.quarantine_id == item.id,
                ReleaseRequest.user_id == self.principal.user_id,
                ReleaseRequest.status == "pending"))
            if row is None:
                row = ReleaseRequest(quarantine_id=item.id, user_id=self.principal.user_id,
                                     requested_at=datetime.now(UTC), comment=comment[:2000],
                                     status="pending", reason="")
                session.add(row)
                await session.commit()
            user = await session.get(User, self.principal.user_id)
        await self._audit("quarantine.request_release", item.id, request=row.id)
        return request_dict(row, user.username if user is not None else "")

    async def pending_requests(self, limit: int = 100, offset: int = 0
                               ) -> list[dict[str, Any]]:
        query = (select(ReleaseRequest, User.username, QuarantineItem)
                 .join(User, User.id == ReleaseRequest.user_id)
                 .join(QuarantineItem, QuarantineItem.id == ReleaseRequest.quarantine_id)
                 .where(ReleaseRequest.status == "pending"))
        if not self.principal.staff:
            query = query.where(ReleaseRequest.user_id == self.principal.user_id)
        async with self.store.session() as session:
            rows = (await session.execute(query.order_by(ReleaseRequest.id)
                                          .limit(limit).offset(offset))).all()
        return [{**request_dict(row, name), "item": item_dict(item)} for row, name, item in rows]

    async def decide(self, request_id: int, approve: bool) -> dict[str, Any]:
        """decide - approve (release) or deny a release request; staff only."""
        if not self.principal.staff:
            await self._audit("quarantine.decide", str(request_id), "refused", why="not staff")
            raise ReviewError(403, "only administrators decide release requests")
        async with self.store.session() as session:
            row = await session.get(ReleaseRequest, request_id)
            if row is None or row.status != "pending":
                raise ReviewError(404, f"no pending release request {request_id}")
            item_id = row.quarantine_id
        if approve:
            await self.release(item_id)
        async with self.store.session() as session:
            row = await session.get(ReleaseRequest, request_id)
            row.status = "approved" if approve else "denied"
            row.decided_by, row.decided_at = self.principal.name, datetime.now(UTC)
            await session.commit()
            user = await session.get(User, row.user_id)
        await self._audit("quarantine.approve" if approve else "quarantine.deny", item_id,
                          request=request_id)
        return request_dict(row, user.username if user is not None else "")

    async def act(self, item_id: str, action: str, comment: str = "") -> dict[str, Any]:
        """act - one named action on one item."""
        if action == "release":
            return await self.release(item_id)
        if action == "release_allow":
            return await self.release(item_id, allow_sender=True)
        if action == "not_spam":
            return await self.release(item_id, not_spam=True)
        if action == "allow_sender":
            return await self.sender_rule(item_id, "allow")
        if action == "block_sender":
            return await self.sender_rule(item_id, "block")
        if action == "delete":
            return await self.delete(item_id)
        if action == "request_release":
            return await self.request_release(item_id, comment)
        raise ReviewError(422, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")

    async def bulk(self, ids: list[str], action: str) -> list[dict[str, Any]]:
        """bulk - one action on many items; each item's outcome."""
        results = []
        for item_id in ids:
            try:
                results.append({"id": item_id, "ok": True,
                                "result": await self.act(item_id, action)})
            except ReviewError as error:
                results.append({"id": item_id, "ok": False, "status": error.status,
                                "detail": str(error)})
        return results


def _readable(message: Any, verdict: dict[str, Any]
              ) -> tuple[list[tuple[str, str]], str, list[dict[str, Any]]]:
    """_readable - decoded headers, the reader's text and the files with their findings."""
    headers = [(name, decoded(value)) for name, value in message.raw_headers[:MAX_HEADERS]]
    findings = verdict.get("findings", [])
    files = []
    for node in message.files[:500]:
        keys = [k for k in (node.name, node.sha256) if k]
        related = [f for f in findings if any(k in f.get("detail", "") for k in keys)]
        files.append({"path": node.path, "name": node.name, "type": node.declared_type,
                      "size": node.size, "sha256": node.sha256, "depth": node.depth,
                      "problems": list(node.problems), "findings": related})
    return headers, message.text, files
