"""The delivery queue: accepted mail to the relay or the mailbox store.

Deliveries are rows in the store (one per message and recipient), so the
queue survives any restart: whatever is pending or deferred when the
process starts is delivered, and nothing that was recorded as delivered is
delivered again. A temporary failure (4xx, or no connection) is retried
with a delay that doubles up to ``retry_max``; a permanent failure (5xx),
or a message older than ``max_age``, is bounced to the envelope sender with
an RFC 3464 report, except for a null sender.

Each delivered copy is written to the message index, with where it lives,
so that retro-scans and user reports find it later by look-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from mailward.envelope import new_queue_id
from mailward.mailbox.base import INBOX, MailboxError
from mailward.message import Message
from mailward.pipeline import QueueLog
from mailward.smtp.dsn import Failure, build_dsn
from mailward.smtp.relay import RecipientResult, RelayTarget, relay
from mailward.store.models import Copy, Delivery, MessageRecord
from mailward.verdict import Action, Verdict

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.delivery")

DUE = ("pending", "deferred")
_BATCH = 200


def _status_code(result: RecipientResult) -> str:
    words = result.message.split()
    if words and words[0].count(".") == 2 and words[0][0] in "245":
        return words[0]
    return f"{result.code // 100}.0.0"


class DeliveryQueue:
    """Delivers what is due, concurrently, and schedules what must wait."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.settings = gateway.settings.delivery
        settings = gateway.settings
        self.relay = RelayTarget.parse(self.settings.relay) if self.settings.relay else None
        bounce = self.settings.bounce_relay
        self.bounce_relay = RelayTarget.parse(bounce) if bounce else self.relay
        outbound = settings.outbound
        self.outbound_relay = (RelayTarget.parse(outbound.relay)
                               if outbound.enabled and outbound.relay else None)
        self.bounce_from = self.settings.bounce_from or f"MAILER-DAEMON@{settings.hostname}"
        self._wake = asyncio.Event()
        self._busy: set[str] = set()
        self._limit = asyncio.Semaphore(self.settings.concurrency)
        self.delivered = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """run - deliver forever; sleep until woken or until something is due."""
        while True:
            try:
                done = await self.run_once()
            except Exception:
                log.exception("delivery pass failed; retrying in 5s")
                done = 0
                await asyncio.sleep(5)
            if done:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=await self._sleep_time())
            except TimeoutError:
                pass

    async def _sleep_time(self) -> float:
        async with self.gateway.services.store.reading() as session:
            soonest = await session.scalar(
                select(Delivery.next_attempt_at).where(Delivery.status.in_(DUE))
                .order_by(Delivery.next_attempt_at).limit(1))
        if soonest is None:
            return 30.0
        return max(0.05, min(30.0, (soonest - datetime.now(UTC)).total_seconds()))

    async def run_once(self) -> int:
        """run_once - deliver every message with a due delivery; how many."""
        now = datetime.now(UTC)
        async with self.gateway.services.store.reading() as session:
            rows = (await session.execute(
                select(Delivery.queue_id).where(Delivery.status.in_(DUE),
                                                Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at).limit(_BATCH))).scalars().all()
        queue_ids = [qid for qid in dict.fromkeys(rows) if qid not in self._busy]
        if not queue_ids:
            return 0
        await asyncio.gather(*(self._guarded(qid) for qid in queue_ids))
        return len(queue_ids)

    async def _guarded(self, queue_id: str) -> None:
        self._busy.add(queue_id)
        try:
            async with self._limit:
                await self.deliver(queue_id)
        except Exception as error:
            QueueLog(log, queue_id).exception("delivery failed; will retry")
            await self._internal_failure(queue_id, "internal error during delivery: "
                                         f"{type(error).__name__}")
        finally:
            self._busy.discard(queue_id)

    async def _internal_failure(self, queue_id: str, reason: str) -> None:
        """_internal_failure - a temporary failure of every due delivery.

        It is retried like a relay's 451, and past ``delivery.max_age`` the
        sender is told (4.4.7), so a message that keeps failing inside the
        gateway is neither retried forever nor dropped without a word. When
        even that cannot be recorded, the deliveries are only deferred.
        """
        try:
            async with self.gateway.services.store.reading() as session:
                record = await session.scalar(select(MessageRecord).where(
                    MessageRecord.queue_id == queue_id))
                due = list((await session.scalars(select(Delivery).where(
                    Delivery.queue_id == queue_id, Delivery.status.in_(DUE)))).all())
            if record is None:
                return
            failed = RecipientResult(451, f"4.3.0 {reason}")
            await self._finish_rows(record, {row.recipient: failed for row in due}, {})
        except Exception:
            QueueLog(log, queue_id).exception("the failure could not be recorded; deferred")
            await self._defer_all(queue_id, reason)

    async def _defer_all(self, queue_id: str, reason: str) -> None:
        async with self.gateway.services.store.session() as session:
            for row in (await session.scalars(select(Delivery).where(
                    Delivery.queue_id == queue_id, Delivery.status.in_(DUE)))).all():
                self._defer(row, reason)
            await session.commit()

    def _defer(self, row: Delivery, reason: str) -> None:
        row.attempts += 1
        delay = min(self.settings.retry_first * 2 ** (row.attempts - 1), self.settings.retry_max)
        row.status = "deferred"
        row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
        row.last_error = reason[:2000]

    # One message.

    async def deliver(self, queue_id: str) -> None:
        """deliver - attempt every due delivery of one message."""
        qlog = QueueLog(log, queue_id)
        store = self.gateway.services.store
        async with store.reading() as session:
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == queue_id))
            due = list((await session.scalars(select(Delivery).where(
                Delivery.queue_id == queue_id, Delivery.status.in_(DUE)))).all())
        if record is None or not due:
            return
        path = self.gateway.spool.queued(queue_id)
        if not path.exists():
            found = self.gateway.spool.find(queue_id)
            if found is None:
                qlog.critical("spool file is missing; deliveries marked failed")
                await self._finish_rows(record, {d.recipient: RecipientResult(
                    554, "5.3.0 message bytes lost from the spool") for d in due}, {})
                return
            path = found
        _, raw = await asyncio.to_thread(self.gateway.spool.read, path)
        message = await asyncio.to_thread(self.gateway.parse, raw)
        verdict = Verdict.from_dict(record.verdict)
        extra: list[tuple[str, str]] = []
        if record.verdict.get("released_by"):
            verdict.action = Action.DELIVER
            extra.append(("X-Mailward-Released", f"by {record.verdict['released_by']}"))
        results: dict[str, RecipientResult] = {}
        places: dict[str, tuple[str, str, str]] = {}
        by_route: dict[str, list[Delivery]] = defaultdict(list)
        for row in due:
            by_route[row.route].append(row)
        for route, rows in by_route.items():
            target = self._target(route, rows)
            if target is None:
                await self._to_mailboxes(record, message, verdict, rows, extra, results, places)
            else:
                await self._to_relay(target, record, message, verdict, rows, extra, results,
                                     places)
        await self._finish_rows(record, results, places)

    def _target(self, route: str, rows: list[Delivery]) -> RelayTarget | None:
        if route == "outbound":
            return self.outbound_relay
        if route == "bounce":
            if self.bounce_relay is None:
                return None
            return self.bounce_relay
        return self.relay

    async def _to_mailboxes(self, record: MessageRecord, message: Message, verdict: Verdict,
                            rows: list[Delivery], extra, results, places) -> None:
        for row in rows:
            if not self.gateway.is_local(row.recipient):
                results[row.recipient] = RecipientResult(
                    550, "5.4.4 no route: the mailbox store only holds local recipients")
                continue
            data = self.gateway.render(message, verdict, record.queue_id, row.recipient, extra)
            try:
                native = await self.gateway.mailboxes.deliver(
                    row.recipient, data, row.folder or INBOX, record.queue_id,
                    record.received_at.timestamp())
            except MailboxError as error:
                results[row.recipient] = RecipientResult(550, f"5.1.1 {error}")
                continue
            except OSError as error:
                results[row.recipient] = RecipientResult(451, f"4.3.0 mailbox store: {error}")
                continue
            results[row.recipient] = RecipientResult(250, "2.0.0 delivered to mailbox")
            places[row.recipient] = ("maildir", row.folder or INBOX, native)

    async def _to_relay(self, target: RelayTarget, record: MessageRecord, message: Message,
                        verdict: Verdict, rows: list[Delivery], extra, results, places) -> None:
        groups: dict[bytes, list[str]] = defaultdict(list)
        for row in rows:
            data = self.gateway.render(message, verdict, record.queue_id, row.recipient, extra)
            groups[data].append(row.recipient)
        for data, recipients in groups.items():
            answer = await relay(target, record.mail_from, recipients, data,
                                 helo=self.gateway.settings.hostname,
                                 timeout=self.settings.relay_timeout)
            results.update(answer)
            for recipient in recipients:
                places[recipient] = ("relay", INBOX, answer[recipient].message[:500])

    async def _finish_rows(self, record: MessageRecord, results: dict[str, RecipientResult],
                           places: dict[str, tuple[str, str, str]]) -> None:
        """_finish_rows - record each result, index copies, bounce what failed."""
        qlog = QueueLog(log, record.queue_id)
        now = datetime.now(UTC)
        too_old = now - record.received_at > timedelta(seconds=self.settings.max_age)
        failures: list[Failure] = []
        async with self.gateway.services.store.session() as session:
            rows = (await session.scalars(select(Delivery).where(
                Delivery.queue_id == record.queue_id))).all()
            for row in rows:
                result = results.get(row.recipient)
                if result is None:
                    continue
                if result.ok:
                    row.status, row.delivered_at = "delivered", now
                    row.attempts += 1
                    row.last_error = ""
                    mailbox, folder, native = places.get(row.recipient, ("relay", INBOX, ""))
                    session.add(self._copy(record, row.recipient, mailbox, folder, native, now,
                                           row.via))
                    self.delivered += 1
                    qlog.info("delivered to <%s> via %s: %s", row.recipient, mailbox,
                              result.message[:120])
                elif result.permanent or too_old:
                    row.status = "bounced"
                    row.attempts += 1
                    row.last_error = f"{result.code} {result.message}"[:2000]
                    failures.append(Failure(row.recipient, _status_code(result)
                                            if result.permanent else "4.4.7",
                                            f"{result.code} {result.message}"))
                    qlog.warning("delivery to <%s> failed: %s %s", row.recipient, result.code,
                                 result.message[:200])
                else:
                    self._defer(row, f"{result.code} {result.message}")
                    qlog.info("delivery to <%s> deferred (attempt %d): %s %s", row.recipient,
                              row.attempts, result.code, result.message[:200])
            final = all(row.status not in DUE for row in rows)
            if final:
                await session.execute(update(MessageRecord).where(
                    MessageRecord.id == record.id).values(state="done"))
            await session.commit()
        if failures and record.mail_from and record.direction != "bounce":
            await self.bounce(record, failures)
        if final:
            await asyncio.to_thread(self.gateway.spool.finish, record.queue_id,
                                    record.received_at)

    def _copy(self, record: MessageRecord, recipient: str, mailbox: str, folder: str,
              native: str, now: datetime, via: str = "") -> Copy:
        sender = record.header_from or record.mail_from
        return Copy(queue_id=record.queue_id, message_id=record.message_id,
                    recipient=recipient.lower(), mailbox=mailbox, folder=folder,
                    native_id=native, sender=sender.lower(),
                    sender_domain=sender.rpartition("@")[2].lower(), subject=record.subject,
                    action=record.action, score=record.score, delivered_at=now,
                    via=via.lower())

    async def bounce(self, record: MessageRecord, failures: list[Failure]) -> str:
        """bounce - queue an RFC 3464 report to the envelope sender."""
        spool = self.gateway.spool
        data = await asyncio.to_thread(spool.message_bytes, record.queue_id)
        headers = b""
        if data is not None:
            end = data.find(b"\r\n\r\n")
            headers = data[:end + 2] if end >= 0 else data[:65536]
        report = build_dsn(reporting_mta=self.gateway.settings.hostname,
                           sender=record.mail_from, bounce_from=self.bounce_from,
                           queue_id=record.queue_id, arrival=record.received_at,
                           original_headers=headers[:65536], failures=failures)
        queue_id = new_queue_id()
        envelope = {"queue_id": queue_id, "mail_from": "", "rcpt_to": [record.mail_from],
                    "received_at": datetime.now(UTC).isoformat()}
        await asyncio.to_thread(spool.write, queue_id, envelope, report)
        now = datetime.now(UTC)
        verdict = Verdict(action=Action.DELIVER, score=0.0, reason="bounce", findings=[],
                          categories={})
        async with self.gateway.services.store.session() as session:
            session.add(MessageRecord(
                queue_id=queue_id, received_at=now, direction="bounce", mail_from="",
                header_from=self.bounce_from, recipients=[record.mail_from],
                subject="Undelivered Mail Returned to Sender", size=len(report),
                action="deliver", verdict=verdict.as_dict(),
                envelope={"bounce_of": record.queue_id}, state="queued"))
            await session.flush()
            session.add(Delivery(queue_id=queue_id, recipient=record.mail_from,
                                 status="pending", attempts=0, next_attempt_at=now,
                                 route="bounce"))
            await session.commit()
        QueueLog(log, record.queue_id).info("bounce %s queued to <%s>", queue_id,
                                            record.mail_from)
        self.wake()
        return queue_id
