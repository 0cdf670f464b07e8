"""Matching: a reported message to the copies mailward delivered, and its campaign.

A report counts only for a copy delivered to the reporter. The candidates
of ``reports.intake`` are tried innermost first, each by what it still
carries: our X-Mailward-Queue-Id header (added to every delivered copy;
forged ones are removed on arrival, and it must name a copy of this
reporter), its Message-ID, and, for a forward that lost the headers, the
index: the reporter's copies with the same subject (and sender, when the
forward still names one), or carrying the same URLs.

A campaign is every delivered copy of the reported message and of its
look-alikes: messages from the same sender domain with the same subject
(or, for reports, the same text) that arrived within
``reports.cluster_window`` of it. Messages from other
senders that carry one of the same URLs (on a domain that is not the
organisation's) are related: a malicious verdict reaches them too, a spam
verdict does not (a shared link alone does not make a newsletter spam).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from mailward.intel.store import url_hash
from mailward.reports.intake import Candidate, normalize_subject
from mailward.store import Store
from mailward.store.models import Copy, MessageRecord, MessageUrl

# The reporter's copies searched for a forward that lost its headers.
INDEX_DAYS = 30
INDEX_LIMIT = 5000
CAMPAIGN_LIMIT = 20000


@dataclass(frozen=True, slots=True)
class Match:
    """The delivered copy a report is about."""

    queue_id: str
    recipient: str
    delivered_at: datetime
    how: str
    depth: int


class NoMatch(LookupError):
    """No copy delivered to the reporter; the text says what is known instead."""


# Subjects shorter than this ("hi", "invoice") join no campaign by subject alone.
MIN_SUBJECT = 10


def subject_key(sender_domain: str, subject: str, queue_id: str) -> str:
    """subject_key - the sender domain and subject; the message itself when too short."""
    wanted = normalize_subject(subject)
    text = f"{sender_domain.lower()}|{wanted}" if len(wanted) >= MIN_SUBJECT \
        else f"message|{queue_id}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def body_key(sender_domain: str, text: str) -> str:
    """body_key - a fingerprint of the sender domain and the visible text.

    Blind to numbers and spacing. The sender domain is part of it so that a
    message copying the text of a legitimate one never joins its campaign
    (and its clean verdict) without being judged itself.
    """
    words = re.findall(r"[^\W\d_]{2,}", text.lower())[:300]
    if len(words) < 5:
        return ""
    text = f"{sender_domain.lower()}|{' '.join(words)}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


async def _copy(session, reporter: str, **where) -> Copy | None:
    query = select(Copy).where(Copy.recipient == reporter)
    for name, value in where.items():
        query = query.where(getattr(Copy, name) == value)
    return await session.scalar(query.order_by(Copy.delivered_at.desc()).limit(1))


async def _by_index(session, reporter: str, candidate: Candidate,
                    now: datetime) -> tuple[Copy, str] | None:
    """_by_index - the reporter's copy with the same subject (and sender), or URLs."""
    since = now - timedelta(days=INDEX_DAYS)
    wanted = normalize_subject(candidate.subject)
    if wanted:
        rows = (await session.scalars(select(Copy).where(
            Copy.recipient == reporter, Copy.delivered_at >= since)
            .order_by(Copy.delivered_at.desc()).limit(INDEX_LIMIT))).all()
        for row in rows:
            if normalize_subject(row.subject) == wanted and \
                    (not candidate.sender or candidate.sender == row.sender):
                return row, "subject"
    hashes = list({url_hash(url) for url in candidate.urls})[:200]
    if hashes:
        row = await session.scalar(
            select(Copy).join(MessageUrl, MessageUrl.queue_id == Copy.queue_id)
            .where(Copy.recipient == reporter, MessageUrl.url_hash.in_(hashes),
                   Copy.delivered_at >= since)
            .order_by(Copy.delivered_at.desc()).limit(1))
        if row is not None:
            return row, "urls"
    return None


async def match_copy(store: Store, reporter: str, candidates: list[Candidate],
                     now: datetime) -> Match:
    """match_copy - the copy of the reporter's that the report is about, or NoMatch."""
    reporter = reporter.lower()
    seen_elsewhere = False
    async with store.session() as session:
        for candidate in candidates:
            found: tuple[Copy | None, str] = (None, "")
            if candidate.queue_id:
                found = (await _copy(session, reporter, queue_id=candidate.queue_id),
                         "queue-id")
            if found[0] is None and candidate.message_id:
                found = (await _copy(session, reporter, message_id=candidate.message_id),
                         "message-id")
            if found[0] is None and candidate.how in ("inline", "arf-headers",
                                                       "attachment", "arf"):
                indexed = await _by_index(session, reporter, candidate, now)
                if indexed is not None:
                    found = indexed
            row, how = found
            if row is not None:
                return Match(row.queue_id, reporter, row.delivered_at, how, candidate.depth)
            seen_elsewhere = seen_elsewhere or await _known(session, candidate)
    if seen_elsewhere:
        raise NoMatch("mailward received this message but never delivered it to you "
                      "(it may have been quarantined or refused already)")
    raise NoMatch("mailward never delivered this message to you: nothing was done")


async def _known(session, candidate: Candidate) -> bool:
    """_known - whether mailward has a record of the message at all."""
    if candidate.queue_id:
        if await session.scalar(select(MessageRecord.id).where(
                MessageRecord.queue_id == candidate.queue_id)) is not None:
            return True
    if candidate.message_id:
        return await session.scalar(select(MessageRecord.id).where(
            MessageRecord.message_id == candidate.message_id).limit(1)) is not None
    return False


async def match_queue_id(store: Store, reporter: str, queue_id: str) -> Match:
    """match_queue_id - a report naming the queue id or the Message-ID of a copy."""
    candidate = Candidate("original", 0, queue_id=queue_id[:32])
    return await match_copy(store, reporter, [candidate], datetime.now().astimezone())


async def match_message_id(store: Store, reporter: str, message_id: str) -> Match:
    candidate = Candidate("original", 0, message_id=message_id.strip()[:998])
    return await match_copy(store, reporter, [candidate], datetime.now().astimezone())


def _foreign(domain: str, own: list[str]) -> bool:
    domain = domain.lower()
    return not any(domain == d or domain.endswith("." + d) for d in own)


async def campaign(store: Store, queue_id: str, window: float,
                   own_domains: list[str]) -> tuple[list[str], list[str]]:
    """campaign - the queue ids of a message and its look-alikes; those related by URL."""
    async with store.session() as session:
        record = await session.scalar(select(MessageRecord).where(
            MessageRecord.queue_id == queue_id))
        if record is None:
            return [queue_id], []
        sender = (record.header_from or record.mail_from).lower()
        domain = sender.rpartition("@")[2]
        start = record.received_at - timedelta(seconds=window)
        end = record.received_at + timedelta(seconds=window)
        found = {queue_id}
        wanted = normalize_subject(record.subject)
        if domain and len(wanted) >= MIN_SUBJECT:
            rows = (await session.execute(
                select(Copy.queue_id, Copy.subject).where(
                    Copy.sender_domain == domain, Copy.delivered_at >= start,
                    Copy.delivered_at <= end + timedelta(seconds=window))
                .limit(CAMPAIGN_LIMIT))).all()
            found.update(qid for qid, subject in rows if normalize_subject(subject) == wanted)
        hashes = (await session.execute(select(MessageUrl.url_hash, MessageUrl.domain).where(
            MessageUrl.queue_id == queue_id))).all()
        foreign = [h for h, d in hashes if _foreign(d, own_domains)][:200]
        related: set[str] = set()
        if foreign:
            rows = (await session.scalars(
                select(MessageUrl.queue_id).join(MessageRecord,
                                                 MessageRecord.queue_id == MessageUrl.queue_id)
                .where(MessageUrl.url_hash.in_(foreign), MessageRecord.received_at >= start,
                       MessageRecord.received_at <= end).limit(CAMPAIGN_LIMIT))).all()
            related.update(rows)
    return sorted(found), sorted(related - found)
