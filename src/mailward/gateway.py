"""The gateway: receive, judge, act. The frame every capability plugs into.

One Gateway object per process owns the services, the pipeline, the spool,
the mailbox store and the delivery queue. The SMTP server hands it each
message's envelope and bytes (``receive``); ``mailward scan`` asks it only to
judge (``judge``). Acting on a verdict is recorded in one database
transaction (the message, its deliveries or its quarantine entry, and what
it carries for the index) before the sender is answered 250.

A message whose checks asked for a hold (``mailward.hold``) and that the
static verdict would deliver is "held": spooled and recorded with its
deliveries in the "held" status, which the delivery queue never picks. Its
holder later calls ``resolve_hold``; the policy decides again over all the
findings, and the message is released to the queue or quarantined, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Awaitable, Callable

from sqlalchemy import select

from mailward import actions
from mailward.attachments.files import UnpackLimits
from mailward.config import Settings
from mailward.hold import Holder, HoldRequest
from mailward.connection.reputation import ReputationBook
from mailward.envelope import Envelope
from mailward.intel.store import url_hash
from mailward.mailbox.base import INBOX, JUNK
from mailward.mailbox.maildir import MaildirStore
from mailward.message import Message
from mailward.mime import Limits
from mailward.pipeline import Outage, Pipeline, PipelineError, Probed, QueueLog, Task
from mailward.quarantine import new_quarantine_id
from mailward.registry import build_pipeline
from mailward.services import Services
from mailward.smtp.spool import Spool, move_durable
from mailward.store.models import Delivery, MessageFile, MessageRecord, MessageUrl, QuarantineItem
from mailward.urls.index import record_domains
from mailward.trap.policy import index_row as trap_index_row
from mailward.verdict import Action, Category, Finding, Verdict

if TYPE_CHECKING:
    from mailward.lists import Expanded

log = logging.getLogger("mailward.gateway")

# Seconds an answer of the outside services is reused: /readyz is not
# authenticated, and each probe opens a connection to a daemon.
PROBE_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: code, enhanced status and text."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Gateway:
    """Everything one mailward process runs, wired from the settings."""

    def __init__(self, settings: Settings, services: Services | None = None) -> None:
        self.settings = settings
        self.services = services or Services.create(settings)
        self.spool = Spool(settings.data_dir)
        self.mailboxes = MaildirStore(settings.data_dir / "mailboxes")
        self.reputation = ReputationBook(self.services.store,
                                         settings.connection.reputation_window)
        self.services.extras["reputation"] = self.reputation
        self.services.extras["gateway"] = self
        self.pipeline: Pipeline | None = None
        self.queue = None
        # Called with (task, verdict) for each judged message, e.g. by /metrics.
        self.observers: list[Callable[[Task, Verdict], None]] = []
        # Holders (a sandbox service) register here while the checks are built.
        self.holders: dict[str, Holder] = {}
        # Addresses mailward receives itself (the user-report mailbox): each intake
        # takes (envelope, bytes) and returns the SMTP reply, or None to pass it on.
        self.intakes: list[Callable[[Envelope, bytes], Awaitable[Reply | None]]] = []
        self._report_key: bytes | None = None
        self._resolving = asyncio.Lock()
        self._probing = asyncio.Lock()
        self._probed: tuple[float, list[Outage]] | None = None
        self._judging = asyncio.Semaphore(settings.pipeline.concurrency)
        self.mime_limits = Limits(settings.pipeline.max_mime_depth,
                                  settings.pipeline.max_mime_parts)
        av = settings.antivirus
        self.unpack_limits = UnpackLimits(av.max_archive_depth, av.max_archive_members,
                                          av.max_unpacked_size)

    async def start(self) -> None:
        """start - migrate the store, load intelligence, build the pipeline."""
        from mailward.smtp.queue import DeliveryQueue

        await self.services.start()
        self.pipeline = build_pipeline(self.services)
        for outage in await self.outages():
            log.warning("%s does not answer: %s", outage.name, outage.detail
                        + ("; until it does, every message is answered 451 and parked"
                           if outage.stops_mail else ""))
        self.queue = DeliveryQueue(self)
        await self.recover()

    async def outages(self) -> list[Outage]:
        """outages - the daemons the checks need that do not answer (cached briefly)."""
        async with self._probing:
            now = time.monotonic()
            if self._probed is not None and now - self._probed[0] < PROBE_CACHE_SECONDS:
                return self._probed[1]
            found: list[Outage] = []
            for item in self.pipeline.checks if self.pipeline is not None else []:
                if not isinstance(item, Probed):
                    continue
                try:
                    found.extend(await item.probe())
                except Exception as error:  # a probe that breaks says so, never "ready"
                    found.append(Outage(item.name, f"probe failed: {error!r}"))
            self._probed = (time.monotonic(), found)
            return found

    async def close(self) -> None:
        """close - finish what is kept in memory for the store, then close it."""
        clicks = self.services.extras.get("click_service")
        if clicks is not None:
            await clicks.close()
        await self.services.close()

    async def recover(self) -> None:
        """recover - finish what a process that died left in the spool.

        A spool file without a record was fsynced but never recorded: the
        process died while judging it, before or just after answering. It is
        judged again and acted on, so it is never lost. A file whose record
        says it is finished is moved where that state belongs.
        """
        from sqlalchemy import select

        for queue_id in self.spool.queued_ids():
            async with self.services.store.session() as session:
                state = await session.scalar(select(MessageRecord.state).where(
                    MessageRecord.queue_id == queue_id))
            path = self.spool.queued(queue_id)
            if state is None:
                envelope, raw = await asyncio.to_thread(self.spool.read, path)
                await self._rejudge(queue_id, envelope, raw)
            elif state == "done":
                await asyncio.to_thread(self.spool.finish, queue_id)
            elif state in ("rejected", "deleted"):
                await asyncio.to_thread(self.spool.discard, queue_id)
            elif state == "quarantined":
                await asyncio.to_thread(self.spool.hold, queue_id)

    async def _rejudge(self, queue_id: str, envelope_data: dict | None, raw: bytes) -> None:
        qlog = QueueLog(log, queue_id)
        if envelope_data is None:
            qlog.error("spool file has no envelope; parked")
            await asyncio.to_thread(self.spool.park, queue_id, "no envelope after a restart")
            return
        envelope = Envelope.from_dict(envelope_data)
        qlog.warning("found in the spool without a record after a restart; judging it again")
        try:
            message, verdict, task = await self.judge(envelope, raw)
            await self.act(envelope, message, verdict, task.holds)
        except Exception as error:
            qlog.exception("could not judge a recovered message; parked")
            await asyncio.to_thread(self.spool.park, queue_id, f"{type(error).__name__}: {error}")

    # Judging.

    def parse(self, raw: bytes) -> Message:
        message = Message(raw, limits=self.mime_limits,
                          max_text_bytes=self.settings.pipeline.max_text_bytes)
        message.unpack_limits = self.unpack_limits
        message.max_urls = self.settings.urls.max_urls
        return message

    def strip_forged_results(self, raw: bytes, queue_id: str) -> bytes:
        """strip_forged_results - drop incoming Authentication-Results claiming our id."""
        from mailward.auth.results import authserv_id, strip_forged

        raw, removed = strip_forged(raw, authserv_id(self.settings))
        if removed:
            QueueLog(log, queue_id).info("removed %d Authentication-Results claiming our "
                                         "authserv-id", removed)
        return raw

    async def judge(self, envelope: Envelope, raw: bytes,
                    session_findings: list | None = None) -> tuple[Message, Verdict, Task]:
        """judge - parse and run the pipeline; raises PipelineError."""
        assert self.pipeline is not None, "Gateway.start() was not awaited"
        raw = self.strip_forged_results(raw, envelope.queue_id)
        async with self._judging:
            task = Task(envelope=envelope, services=self.services,
                        findings=list(session_findings or []))
            verdict = await self.pipeline.judge(task, parse=lambda: self.parse(raw),
                                                size=len(raw))
        assert task.message is not None
        return task.message, verdict, task

    # Receiving over SMTP.

    async def receive(self, envelope: Envelope, raw: bytes,
                      session_findings: list | None = None) -> Reply:
        """receive - spool, judge and act on one message; the SMTP reply."""
        qlog = QueueLog(log, envelope.queue_id)
        started = time.perf_counter()
        for intake in self.intakes:
            try:
                taken = await intake(envelope, raw)
            except Exception:
                qlog.exception("intake %r failed", intake)
                return Reply(451, "4.3.0 Temporary local failure, try again later")
            if taken is not None:
                return taken
        # Forged results go before the bytes are kept, so every stage sees one header list.
        raw = self.strip_forged_results(raw, envelope.queue_id)
        await asyncio.to_thread(self.spool.write, envelope.queue_id, envelope.as_dict(), raw)
        try:
            message, verdict, task = await self.judge(envelope, raw, session_findings)
            reply = await self.act(envelope, message, verdict, task.holds)
        except PipelineError as error:
            qlog.error("not judged (451: the sender retries), copy parked: %s", error)
            await asyncio.to_thread(self.spool.park, envelope.queue_id, str(error))
            return Reply(451, "4.3.0 Temporary failure judging the message, try again later")
        except Exception as error:
            qlog.exception("failed to act on the message; parked")
            await asyncio.to_thread(self.spool.park, envelope.queue_id,
                                    f"{type(error).__name__}: {error}")
            return Reply(451, "4.3.0 Temporary local failure, try again later")
        self._log_decision(envelope, message, verdict, time.perf_counter() - started)
        for observe in self.observers:
            try:
                observe(task, verdict)
            except Exception:
                qlog.exception("observer %r failed", observe)
        return reply

    def _log_decision(self, envelope: Envelope, message: Message, verdict: Verdict,
                      elapsed: float) -> None:
        symbols = ",".join(verdict.top_symbols(6)) or "-"
        QueueLog(log, envelope.queue_id).info(
            "peer=%s from=<%s> to=%s action=%s score=%.2f symbols=%s took=%.0fms",
            envelope.peer_ip or "-", envelope.mail_from, ",".join(envelope.rcpt_to),
            verdict.action, verdict.score, symbols, elapsed * 1000,
            extra={"peer": envelope.peer_ip, "mail_from": envelope.mail_from,
                   "recipients": envelope.rcpt_to, "action": str(verdict.action),
                   "score": round(verdict.score, 2), "symbols": verdict.top_symbols(6),
                   "message_id": message.message_id, "took_ms": round(elapsed * 1000, 1)})

    async def act(self, envelope: Envelope, message: Message, verdict: Verdict,
                  holds: list[HoldRequest] | None = None) -> Reply:
        """act - record the verdict, then do what it says; the SMTP reply.

        The record is committed before the file moves, so a crash in between
        leaves a state that ``recover`` completes. A held message stays in
        the queue directory with its deliveries "held" until its holders
        resolve it.
        """
        qid = envelope.queue_id
        if holds and verdict.action in (Action.DELIVER, Action.TAG) \
                and all(request.owner in self.holders for request in holds):
            await self._record(envelope, message, verdict, state="held")
            await self._link_forward(envelope, message)
            for owner in dict.fromkeys(request.owner for request in holds):
                await self.holders[owner].hold(envelope, message, verdict,
                                               [r for r in holds if r.owner == owner])
            return Reply(250, f"2.0.0 Ok: queued as {qid}")
        if verdict.action == Action.REJECT:
            await self._record(envelope, message, verdict, state="rejected")
            await asyncio.to_thread(self.spool.discard, qid)
            return Reply(550, f"5.7.1 {verdict.reject_text}")
        if verdict.action == Action.QUARANTINE:
            await self._record(envelope, message, verdict, state="quarantined")
            await asyncio.to_thread(self.spool.hold, qid)
            return Reply(250, f"2.0.0 Ok: queued as {qid}")
        await self._record(envelope, message, verdict, state="queued")
        if self.queue is not None:
            self.queue.wake()
        await self._link_forward(envelope, message)
        return Reply(250, f"2.0.0 Ok: queued as {qid}")

    async def _link_forward(self, envelope: Envelope, message: Message) -> None:
        """_link_forward - link a local sender's forward to its original (best effort)."""
        from mailward.trap.forwards import link_forward

        try:
            await link_forward(self, envelope, message)
        except Exception:  # the message is accepted already; a lost link is only logged
            QueueLog(log, envelope.queue_id).exception("could not link a forward")

    def folder_for(self, verdict: Verdict) -> str:
        if verdict.action == Action.TAG and verdict.category == Category.SPAM:
            return JUNK
        return INBOX

    async def _record(self, envelope: Envelope, message: Message, verdict: Verdict,
                      state: str) -> None:
        """_record - the message, its deliveries or quarantine entry, its index rows."""
        now = datetime.now(UTC)
        header_from = message.from_addresses[0].address if message.from_addresses else ""
        record = MessageRecord(
            queue_id=envelope.queue_id, received_at=envelope.received_at,
            direction="outbound" if envelope.outbound else "inbound",
            peer_ip=envelope.peer_ip, helo=envelope.helo[:255],
            mail_from=envelope.mail_from[:320], header_from=header_from[:320],
            recipients=list(envelope.rcpt_to), subject=message.subject[:2000],
            message_id=message.message_id[:998], size=len(message.raw),
            sha256=message.sha256, action=str(verdict.action),
            category=str(verdict.category) if verdict.category else None,
            score=verdict.score, reason=verdict.reason, verdict=verdict.as_dict(),
            envelope=envelope.as_dict(), state=state)
        async with self.services.store.session() as session:
            session.add(record)
            await session.flush()
            if state in ("queued", "held"):
                folder = self.folder_for(verdict)
                status = "pending" if state == "queued" else "held"
                for recipient in self.expand(envelope.rcpt_to, envelope.queue_id,
                                             envelope.outbound):
                    route = "outbound" if envelope.outbound and \
                        not self.is_local(recipient.address) else "inbound"
                    session.add(Delivery(queue_id=envelope.queue_id,
                                         recipient=recipient.address, status=status,
                                         attempts=0, next_attempt_at=now, folder=folder,
                                         route=route, via=recipient.via[:320]))
            if state == "quarantined":
                session.add(QuarantineItem(
                    id=new_quarantine_id(), queue_id=envelope.queue_id, created_at=now,
                    category=str(verdict.category or Category.POLICY), reason=verdict.reason,
                    sender=header_from or envelope.mail_from, recipients=list(envelope.rcpt_to),
                    subject=message.subject[:2000], size=len(message.raw)))
            if state != "rejected":
                self._index_rows(session, envelope.queue_id, message)
                await record_domains(session, self.services.store, message)
            await self.reputation.count(session, envelope.peer_ip, verdict)
            await session.commit()

    # Held messages.

    async def resolve_hold(self, queue_id: str, findings: list[Finding],
                           note: str) -> Verdict | None:
        """resolve_hold - decide a held message again with new findings, exactly once.

        The new verdict is the policy's over the recorded findings and the
        holder's. Deliver and tag release the deliveries to the queue;
        quarantine (and reject, which can no longer be said to the sender)
        moves the message to the quarantine. None when the message is no
        longer held (another node or an earlier call decided it).
        """
        async with self._resolving:
            verdict = await self._resolve_hold(queue_id, findings, note)
        if verdict is not None and verdict.action in (Action.DELIVER, Action.TAG) \
                and self.queue is not None:
            self.queue.wake()
        return verdict

    async def _resolve_hold(self, queue_id: str, findings: list[Finding],
                            note: str) -> Verdict | None:
        assert self.pipeline is not None
        qlog = QueueLog(log, queue_id)
        async with self.services.store.session() as session:
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == queue_id).with_for_update())
            if record is None or record.state != "held":
                return None
            verdict = self._decide_again(record, findings, note)
            now = datetime.now(UTC)
            rows = (await session.scalars(select(Delivery).where(
                Delivery.queue_id == queue_id, Delivery.status == "held"))).all()
            record.action, record.score = str(verdict.action), verdict.score
            record.category = str(verdict.category) if verdict.category else None
            record.reason, record.verdict = verdict.reason, verdict.as_dict()
            moved = False
            if verdict.action in (Action.DELIVER, Action.TAG):
                record.state = "queued"
                for row in rows:
                    row.status, row.next_attempt_at = "pending", now
                    row.folder = self.folder_for(verdict)
            else:
                record.state = "quarantined"
                for row in rows:
                    await session.delete(row)
                session.add(QuarantineItem(
                    id=new_quarantine_id(), queue_id=queue_id, created_at=now,
                    category=str(verdict.category or Category.POLICY), reason=verdict.reason,
                    sender=record.header_from or record.mail_from,
                    recipients=list(record.recipients), subject=record.subject,
                    size=record.size))
                await asyncio.to_thread(move_durable, self.spool.queued(queue_id),
                                        self.spool.held(queue_id))
                moved = True
            try:
                await session.commit()
            except Exception:
                if moved:
                    await asyncio.to_thread(move_durable, self.spool.held(queue_id),
                                            self.spool.queued(queue_id))
                raise
        qlog.info("hold resolved (%s): action=%s score=%.2f symbols=%s", note, verdict.action,
                  verdict.score, ",".join(verdict.top_symbols(6)) or "-")
        return verdict

    def _decide_again(self, record: MessageRecord, findings: list[Finding],
                      note: str) -> Verdict:
        """_decide_again - the policy over the recorded findings plus the new ones."""
        assert self.pipeline is not None
        policy = self.pipeline.policy
        earlier = []
        for scored in Verdict.from_dict(record.verdict).findings:
            rule = policy.scores.rule(scored.symbol)
            weight = scored.score / rule.score if rule.score else 1.0
            earlier.append(Finding(scored.symbol, scored.category, scored.detail, weight))
        from mailward.auth import is_trusted_peer

        verdict = policy.decide(earlier + list(findings),
                                sender=record.header_from or record.mail_from,
                                trusted_peer=is_trusted_peer(
                                    self.settings.auth.trusted_networks, record.peer_ip))
        if verdict.action == Action.REJECT:
            verdict.action = Action.QUARANTINE
            verdict.reason += " (after acceptance a reject is a quarantine)"
        if verdict.action.rank >= Action.QUARANTINE.rank:
            verdict.reason = f"{note}: {verdict.reason}"
        return verdict

    def _index_rows(self, session, queue_id: str, message: Message) -> None:
        seen_urls = set()
        for found in message.urls:
            digest = url_hash(found.url)
            if digest in seen_urls:
                continue
            seen_urls.add(digest)
            session.add(MessageUrl(queue_id=queue_id, url=found.url, url_hash=digest,
                                   domain=found.host[:255]))
        for node in message.files:
            if node.data:
                session.add(MessageFile(queue_id=queue_id, sha256=node.sha256,
                                        path=node.path[:2000],
                                        content_type=node.declared_type[:255], size=node.size))
        trap_index_row(session, queue_id, message)

    def report_link(self, queue_id: str, recipient: str) -> str:
        """report_link - the signed "Report phishing" link of one copy's banner."""
        if not self.settings.reports.enabled:
            return ""
        from mailward.reports.tokens import link_token
        from mailward.web.security import load_secret

        if self._report_key is None:
            self._report_key = load_secret(self.settings)
        return f"{self.settings.public_url}/report/" \
               f"{link_token(self._report_key, queue_id, recipient)}"

    def expand(self, recipients: list[str], queue_id: str,
               outbound: bool = False) -> list["Expanded"]:
        """expand - the envelope recipients with mailward's own lists expanded."""
        from mailward.lists import Expanded, expand_logged

        lists = self.settings.lists
        if outbound or not lists.members:
            return [Expanded(address) for address in recipients]
        return expand_logged(recipients, lists.members, lists.max_depth, lists.max_members,
                             queue_id)

    def is_local(self, address: str) -> bool:
        from mailward.content.external import is_own_domain

        domains = self.settings.smtp.accepted_domains
        return not domains or is_own_domain(address.rpartition("@")[2], domains)

    # What delivered mail looks like.

    def render(self, message: Message, verdict: Verdict, queue_id: str,
               recipient: str, extra_headers: list[tuple[str, str]] | None = None) -> bytes:
        """render - the bytes delivered to one recipient."""
        from mailward.urls.rewrite import copy_rewriter

        banner = self.settings.banner
        data = actions.render(message, verdict, queue_id, external_text=banner.external,
                              suspicious_text=banner.suspicious, extra_headers=extra_headers,
                              rewrite=copy_rewriter(self, queue_id, recipient),
                              report_link=self.report_link(queue_id, recipient))
        # Render hooks (such as the ARC sealer) see the final bytes and may add to them.
        for hook in self.services.extras.get("render_hooks", []):
            data = hook(message, verdict, data, queue_id)
        return data
