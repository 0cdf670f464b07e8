"""Forwards between local mailboxes, linked to their original at intake.

A recipient who forwards a delivered message to a colleague sends it back
through the gateway as a new message, which may no longer carry what a
later indicator names (an inline forward often keeps the text and loses
the attachment, or its links are rewritten by the client). So at intake a
message from a local sender is read the way a user report is: the
originals attached to it (``reports.intake.read_submission``), matched by
their X-Mailward-Queue-Id or Message-ID, and an inline forward through the
message index (``reports.matching.match_copy``). Only a copy delivered to
the forwarder counts, so a stranger cannot link their mail to someone
else's. An inline candidate is taken only when the forward's own subject
says it is one (``Fw:``, ``Fwd:``, ``WG:``, ...), so a reply is never linked.

The link is a row of ``forward_links``. When the retro-scan pulls copies of
an original, the copies of every forward linked to it (and forwards of
those, up to ``trap.forward_hops``) join the incident, matched on
``forward``, and are pulled under the same category rule.

SECURITY: the forward is attacker-reachable input (it may quote a phish);
the parser is the bounded one of the report intake, and a failure here is
logged and never touches the delivery of the message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from mailward.reports.intake import IntakeError, read_submission
from mailward.reports.matching import NoMatch, match_copy
from mailward.store.models import Copy, ForwardLink
from mailward.trap.lookup import CopyHit

if TYPE_CHECKING:
    from mailward.envelope import Envelope
    from mailward.gateway import Gateway
    from mailward.message import Message

log = logging.getLogger("mailward.trap")

# A subject that announces a forward, in the wording of common mail clients.
_FORWARDED = re.compile(r"^\s*(fw|fwd|wg|tr|enc|rv|vs|vb|doorst)\s*(\[\d+\])?\s*:",
                        re.IGNORECASE)
# Forwards followed from one original; a loop of forwards ends at the first repeat.
MAX_FORWARDS = 5000


def is_forward_subject(subject: str) -> bool:
    """is_forward_subject - whether a subject starts with a forward prefix."""
    return bool(_FORWARDED.match(subject or ""))


def _carries_message(message: "Message") -> bool:
    """_carries_message - whether any part is an attached message."""
    return any(node.content_type in ("message/rfc822", "message/global")
               for node in message.root.walk())


async def link_forward(gateway: "Gateway", envelope: "Envelope",
                       message: "Message") -> ForwardLink | None:
    """link_forward - the original a local sender's message forwards, stored; or None."""
    settings = gateway.settings
    if not settings.trap.follow_forwards or envelope.outbound:
        return None
    header_from = message.from_addresses[0].address if message.from_addresses else ""
    senders = [a.lower() for a in dict.fromkeys((envelope.mail_from, header_from))
               if a and "@" in a and gateway.is_local(a)]
    forward = is_forward_subject(message.subject)
    # Most mail is neither: it is not read a second time.
    if not senders or not (forward or _carries_message(message)):
        return None
    try:
        intake = await asyncio.to_thread(read_submission, message.raw,
                                         settings.reports.max_forward_depth, True)
    except IntakeError:
        return None
    candidates = [c for c in intake.candidates if c.how != "inline" or forward]
    if not candidates:
        return None
    now = datetime.now(UTC)
    store = gateway.services.store
    for forwarder in senders:
        try:
            match = await match_copy(store, forwarder, candidates, now)
        except NoMatch:
            continue
        if match.queue_id == envelope.queue_id:
            return None
        async with store.session() as session:
            known = await session.scalar(select(ForwardLink).where(
                ForwardLink.queue_id == envelope.queue_id,
                ForwardLink.original_queue_id == match.queue_id))
            if known is not None:
                return known
            link = ForwardLink(queue_id=envelope.queue_id, original_queue_id=match.queue_id,
                               forwarder=forwarder[:320], matched_by=match.how[:32],
                               linked_at=now)
            session.add(link)
            await session.commit()
        log.info("%s: a forward by %s of %s (matched by %s)", envelope.queue_id, forwarder,
                 match.queue_id, match.how)
        return link
    return None


async def forwarded_hits(session, hits: Iterable[CopyHit], hops: int) -> list[CopyHit]:
    """forwarded_hits - the copies of forwards of the hit messages, hops deep."""
    known = {hit.copy_id for hit in hits}
    frontier = {hit.queue_id for hit in hits}
    seen = set(frontier)
    found: list[CopyHit] = []
    for _ in range(hops):
        if not frontier or len(seen) > MAX_FORWARDS:
            break
        wanted = sorted(frontier)
        frontier = set()
        for start in range(0, len(wanted), 500):
            links = (await session.execute(
                select(ForwardLink.queue_id, ForwardLink.original_queue_id).where(
                    ForwardLink.original_queue_id.in_(wanted[start:start + 500])))).all()
            forwards = sorted({qid for qid, _ in links} - seen)
            seen.update(forwards)
            frontier.update(forwards)
            for part in range(0, len(forwards), 500):
                rows = (await session.execute(
                    select(Copy.id, Copy.queue_id, Copy.recipient, Copy.state).where(
                        Copy.queue_id.in_(forwards[part:part + 500])))).all()
                originals = {qid: original for qid, original in links}
                for copy_id, queue_id, recipient, state in rows:
                    if copy_id in known:
                        continue
                    known.add(copy_id)
                    found.append(CopyHit(copy_id, queue_id, recipient, state,
                                         f"forward of {originals[queue_id]}"))
    return found
