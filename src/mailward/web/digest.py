"""End-user quarantine digests, and the signed one-click links they carry.

Each user chooses a schedule (off, daily, every N hours). When a digest is
due and something new has been held for one of the user's addresses since
the last one, a plain-text message listing the new items goes out through
the delivery queue (so the relay, retries and the trace apply to it). Each
item carries links: release (or, for malware and phishing, request
release), allow the sender, block the sender.

SECURITY: a link is ``/digest/<nonce>.<signature>``: a random nonce stored
with the user, item, action and expiry, and an HMAC-SHA256 over all of them
with the site key, so neither a guessed nonce nor a copy of the database
makes a working link. A link works once (it is marked used in the same
statement that checks it is unused) and not after it expires. Opening a
link shows what it will do; only the button (a POST) acts, so mail
scanners that fetch links do not release anything. A digest link acts with
a user's rights even for staff accounts. Refusals are logged and audited.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from mailward.envelope import new_queue_id
from mailward.quarantine import Filters
from mailward.store.models import Delivery, DigestLink, MessageRecord, QuarantineItem, User
from mailward.verdict import Action, Verdict
from mailward.web import audit
from mailward.web.deps import Principal
from mailward.web.review import Review, ReviewError, user_may_release
from mailward.web.security import load_secret, sign, signature_ok, visible

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")
LINK_ACTIONS = {"release": "release", "request": "request_release",
                "allow": "allow_sender", "block": "block_sender"}
LABELS = {"release": "Release", "request": "Request release", "allow": "Allow sender",
          "block": "Block sender"}


class LinkError(Exception):
    """A digest link that does not work; the text says why (shown to the user)."""


@dataclass
class Link:
    row: DigestLink
    user: User
    item: QuarantineItem


def _signed_text(nonce: str, user_id: int, item_id: str, action: str,
                 expires_at: datetime) -> str:
    return f"{nonce}|{user_id}|{item_id}|{action}|{int(expires_at.timestamp())}"


class Digests:
    """Build, send and redeem quarantine digests for one gateway."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.store = gateway.services.store
        self.settings = gateway.settings
        self.key = load_secret(gateway.settings)

    # Links.

    async def make_link(self, user: User, item: QuarantineItem, action: str,
                        now: datetime) -> str:
        """make_link - a new signed link for one action on one item."""
        nonce = secrets.token_urlsafe(18)
        expires = now + timedelta(seconds=self.settings.web.digest_link_lifetime)
        async with self.store.session() as session:
            session.add(DigestLink(nonce=nonce, user_id=user.id, quarantine_id=item.id,
                                   action=action, created_at=now, expires_at=expires))
            await session.commit()
        signature = sign(self.key, _signed_text(nonce, user.id, item.id, action, expires))
        return f"{self.settings.public_url}/digest/{nonce}.{signature}"

    async def resolve(self, token: str) -> Link:
        """resolve - the link a token names, checked (signature, expiry, unused)."""
        nonce, _, signature = token.partition(".")
        if not nonce or not signature or len(token) > 200:
            raise LinkError("this link is not a digest link")
        async with self.store.session() as session:
            row = await session.get(DigestLink, nonce)
            if row is None:
                raise LinkError("this link is not valid")
            text = _signed_text(row.nonce, row.user_id, row.quarantine_id, row.action,
                                row.expires_at)
            if not signature_ok(self.key, text, signature):
                raise LinkError("this link is not valid")
            user = await session.get(User, row.user_id)
            item = await session.get(QuarantineItem, row.quarantine_id)
        if row.used_at is not None:
            raise LinkError("this link was already used")
        if row.expires_at <= datetime.now(UTC):
            raise LinkError("this link has expired; open the quarantine in the console")
        if user is None or user.disabled_at is not None or item is None:
            raise LinkError("this link is no longer valid")
        return Link(row, user, item)

    async def redeem(self, token: str, ip: str) -> dict[str, Any]:
        """redeem - do what a link says, once; LinkError or ReviewError if not."""
        try:
            link = await self.resolve(token)
        except LinkError as error:
            log.warning("refused digest link from %s: %s", ip or "-", error)
            await audit.record(self.store, "digest", "", "digest.redeem",
                               token.partition(".")[0][:43], ip=ip, outcome="refused",
                               why=str(error))
            raise
        async with self.store.session() as session:
            claimed = await session.execute(
                update(DigestLink).where(DigestLink.nonce == link.row.nonce,
                                         DigestLink.used_at.is_(None))
                .values(used_at=datetime.now(UTC)))
            await session.commit()
        if claimed.rowcount != 1:
            raise LinkError("this link was already used")
        principal = Principal(name=f"digest:{link.user.username}", role="user", via="digest",
                              user_id=link.user.id, ip=ip,
                              addresses=frozenset(a.lower() for a in link.user.addresses))
        action = LINK_ACTIONS[link.row.action]
        result = await Review(self.gateway, principal).act(link.item.id, action)
        return {"action": link.row.action, "item": link.item.id, "result": result}

    # Sending.

    async def due_users(self, now: datetime) -> list[User]:
        async with self.store.session() as session:
            users = (await session.scalars(select(User).where(
                User.digest_every_hours > 0, User.disabled_at.is_(None)))).all()
        return [u for u in users if u.addresses and (
            u.digest_last_at is None
            or u.digest_last_at + timedelta(hours=u.digest_every_hours) <= now)]

    async def new_items(self, user: User) -> list[QuarantineItem]:
        since = user.digest_last_at or user.created_at
        principal = Principal(name=f"digest:{user.username}", role="user", via="digest",
                              user_id=user.id, addresses=frozenset(user.addresses))
        items, _ = await Review(self.gateway, principal).list(
            Filters(status="held", since=since), self.settings.web.digest_max_items + 1, 0)
        return items

    async def run_once(self, now: datetime | None = None) -> int:
        """run_once - send every digest that is due and has news; how many were sent."""
        now = now or datetime.now(UTC)
        sent = 0
        for user in await self.due_users(now):
            items = await self.new_items(user)
            if not items:
                continue
            await self.send(user, items, now)
            sent += 1
        return sent

    async def send(self, user: User, items: list[QuarantineItem], now: datetime) -> str:
        """send - queue one digest for a user; its queue id."""
        limit = self.settings.web.digest_max_items
        lines = [f"Hello {user.username},", "",
                 f"mailward held {len(items) if len(items) <= limit else f'more than {limit}'}"
                 " new message(s) for you. Nothing was delivered; act on each below.", ""]
        for item in items[:limit]:
            lines.extend(await self._item_lines(user, item, now))
        lines.extend(["", f"The links work once and expire after "
                      f"{self.settings.web.digest_link_lifetime / 3600:g} hours.",
                      f"All of your quarantine: {self.settings.public_url}/console/quarantine"])
        raw = self._message(user, "\r\n".join(lines), len(items), now)
        queue_id = await self._queue(user, raw, now)
        async with self.store.session() as session:
            (await session.get(User, user.id)).digest_last_at = now
            await session.commit()
        log.info("%s: quarantine digest of %d item(s) queued for %s", queue_id, len(items),
                 user.username)
        return queue_id

    async def _item_lines(self, user: User, item: QuarantineItem, now: datetime) -> list[str]:
        release = ("release" if user_may_release(self.gateway.settings, item.category)
                   else "request")
        lines = [f"* {item.created_at:%Y-%m-%d %H:%M} UTC  [{item.category}]",
                 f"  From:    {_line(item.sender)}",
                 f"  Subject: {_line(item.subject)}"]
        for action in (release, "allow", "block"):
            lines.append(f"  {LABELS[action]}: {await self.make_link(user, item, action, now)}")
        lines.append("")
        return lines

    def _message(self, user: User, text: str, count: int, now: datetime) -> bytes:
        sender = self.settings.web.digest_from or f"quarantine@{self.settings.hostname}"
        message = EmailMessage(policy=SMTP)
        message["From"] = sender
        message["To"] = user.addresses[0]
        message["Subject"] = f"Quarantine digest: {count} new message(s)"
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.settings.hostname)
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text.replace("\r\n", "\n"))
        return message.as_bytes()

    async def _queue(self, user: User, raw: bytes, now: datetime) -> str:
        """_queue - spool the digest and record its delivery, as the queue expects."""
        spool = self.gateway.spool
        queue_id = new_queue_id()
        recipient = user.addresses[0]
        await asyncio.to_thread(spool.write, queue_id, {"queue_id": queue_id, "mail_from": "",
                                                        "rcpt_to": [recipient],
                                                        "received_at": now.isoformat(),
                                                        "digest_for": user.username}, raw)
        verdict = Verdict(action=Action.DELIVER, score=0.0, reason="quarantine digest",
                          findings=[], categories={})
        async with self.store.session() as session:
            session.add(MessageRecord(
                queue_id=queue_id, received_at=now, direction="digest", mail_from="",
                header_from=self.settings.web.digest_from, recipients=[recipient],
                subject="Quarantine digest", size=len(raw), action="deliver",
                verdict=verdict.as_dict(), envelope={"digest_for": user.username},
                state="queued"))
            await session.flush()
            session.add(Delivery(queue_id=queue_id, recipient=recipient, status="pending",
                                 attempts=0, next_attempt_at=now, route="inbound"))
            await session.commit()
        if self.gateway.queue is not None:
            self.gateway.queue.wake()
        return queue_id


def _line(text: str) -> str:
    """_line - hostile text as one visible line of a digest."""
    return visible(" ".join(str(text).split()), 200)


async def run(gateway: "Gateway") -> None:
    """run - send due digests forever, every ``web.digest_interval``."""
    digests = Digests(gateway)
    while True:
        try:
            await digests.run_once()
        except Exception:
            log.exception("quarantine digest pass failed; trying again next interval")
        await asyncio.sleep(gateway.settings.web.digest_interval)


__all__ = ["Digests", "LinkError", "ReviewError", "run"]
