"""The report service: take a report, decide its campaign once, act, answer.

    submit ─► rate limit ─► intake (find the original) ─► match a copy of the
    reporter's ─► record the report ─► join or open the campaign (cluster)
      └► new campaign: analyse on the task queue ─► re-run the pipeline
           ─► confident: decide ─► act on every copy ─► tell every reporter
           └► not confident: analyst queue (an override decides and acts)
      └► campaign already decided: act on the new copies, tell this reporter

Analysis, acting and the outcome emails run on huey, an existing task
queue (SQLite in the data directory, or Redis for several nodes), so a
burst of reports waits in a durable queue and a failed email is retried.
Without a running consumer (the CLI, a test building a gateway in process)
the same steps run as tasks on the caller's event loop.

SECURITY: nothing is moved without a match to a copy delivered to the
reporter and a verdict; a report is refused past the per-reporter rate
limit; reported bytes are bounded by ``reports.max_message_size``.
Own phishing simulations are recognised and never retracted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from mailward.config import parse_rate
from mailward.connection.ratelimit import MemoryBuckets, RedisBuckets
from mailward.content.external import own_domains
from mailward.mailbox.base import INBOX, JUNK, QUARANTINE
from mailward.reports import analysis
from mailward.reports.analysis import CLEAN, MALICIOUS, SIMULATION, SPAM, VERDICTS, Outcome
from mailward.reports.intake import IntakeError, read_submission
from mailward.mailbox.retract import PullResult, Retractor
from mailward.reports.matching import (
    Match,
    NoMatch,
    body_key,
    campaign,
    match_copy,
    match_message_id,
    match_queue_id,
    subject_key,
)
from mailward.reports.notify import Notifier
from mailward.store.models import (
    Copy,
    MessageFile,
    MessageRecord,
    MessageUrl,
    ReportAction,
    ReportCluster,
    UserReport,
)
from mailward.taskqueue import make_queue, run_consumer
from mailward.web.security import load_secret

if TYPE_CHECKING:
    from mailward.envelope import Envelope
    from mailward.gateway import Gateway, Reply

log = logging.getLogger("mailward.reports")

TARGET = {MALICIOUS: QUARANTINE, SPAM: JUNK, CLEAN: INBOX}
# Retractor outcomes that changed where a copy is.
MOVED_OUTCOMES = ("pulled", "moved", "restored")
SOURCES = ("api", "link", "mailbox", "arf", "cli")
LEARN_AT_MOST = 20
ANALYSIS_TRIES = 3
INTEL_SOURCE = "user-report"


class SubmitError(Exception):
    """A report that was not taken: an HTTP-like status and what to do about it."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class Taken:
    """A report that was taken: its id, its campaign, and what happens next."""

    report_id: int
    cluster_id: int
    status: str
    matched_by: str
    queue_id: str
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"report": self.report_id, "cluster": self.cluster_id, "status": self.status,
                "matched_by": self.matched_by, "queue_id": self.queue_id,
                "duplicate": self.duplicate}


class ReportService:
    """User reports for one gateway."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.store = gateway.services.store
        self.settings = gateway.settings.reports
        self.key = load_secret(gateway.settings)
        backend = gateway.settings.ratelimit.backend
        self.buckets = RedisBuckets(backend) if backend.startswith("redis") \
            else MemoryBuckets()
        self.rate = parse_rate(self.settings.per_reporter)
        self.notifier = Notifier(gateway)
        self.retractor = Retractor.from_settings(gateway.settings, self.store)
        self.huey = make_queue("reports", self.settings.queue, gateway.settings.data_dir,
                               "reports.queue")
        self._analyse_task = self.huey.task(name="reports.analyse",
                                            retries=ANALYSIS_TRIES - 1,
                                            retry_delay=5)(self._analyse_job)
        self._notify_task = self.huey.task(name="reports.notify", retries=6,
                                           retry_delay=30)(self._notify_job)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._clustering = asyncio.Lock()
        self._inline: set[asyncio.Task] = set()
        self.descriptions = _symbol_descriptions()

    # Intake.

    async def _limit(self, reporter: str) -> None:
        capacity, period = self.rate
        if capacity and not await self.buckets.take(f"report:{reporter}", capacity, period):
            log.warning("report refused: %s is over the rate limit %s", reporter,
                        self.settings.per_reporter)
            raise SubmitError(429, f"too many reports from {reporter}: at most "
                                   f"{self.settings.per_reporter}; try again later")

    async def submit(self, reporter: str, source: str, *, raw: bytes | None = None,
                     queue_id: str | None = None, message_id: str | None = None,
                     kind: str = "phish", wrapped: bool = False) -> Taken:
        """submit - take one report; SubmitError says why one was not taken."""
        reporter = reporter.strip().lower()
        if "@" not in reporter or len(reporter) > 320:
            raise SubmitError(422, "the reporter is not an email address")
        if not self.settings.enabled:
            raise SubmitError(503, "user reports are turned off here (reports.enabled)")
        await self._limit(reporter)
        now = datetime.now(UTC)
        match, note = await self._match(reporter, raw, queue_id, message_id, wrapped, now)
        if match is None:
            await self._record_refusal(reporter, source, kind, note, now)
            raise SubmitError(404, note)
        return await self._take(reporter, source, kind, match, note, now)

    async def _match(self, reporter: str, raw: bytes | None, queue_id: str | None,
                     message_id: str | None, wrapped: bool,
                     now: datetime) -> tuple[Match | None, str]:
        try:
            if raw is not None:
                if len(raw) > self.settings.max_message_size:
                    raise SubmitError(413, f"the reported message is larger than "
                                           f"{self.settings.max_message_size} bytes")
                intake = await asyncio.to_thread(read_submission, raw,
                                                 self.settings.max_forward_depth, wrapped)
                match = await match_copy(self.store, reporter, intake.candidates, now)
                note = "; ".join(intake.problems)
                if match.depth > 1:
                    note = "; ".join(filter(None, [note, f"matched the message forwarded "
                                                         f"at depth {match.depth}"]))
                return match, note
            if queue_id:
                return await match_queue_id(self.store, reporter, queue_id), ""
            if message_id:
                return await match_message_id(self.store, reporter, message_id), ""
        except IntakeError as error:
            return None, str(error)
        except NoMatch as error:
            return None, str(error)
        return None, "the report names no message: send the original, its queue id or " \
                     "its Message-ID"

    async def _record_refusal(self, reporter: str, source: str, kind: str, note: str,
                              now: datetime) -> None:
        async with self.store.session() as session:
            session.add(UserReport(reporter=reporter, reported_at=now, source=source,
                                   kind=kind[:16], status="unmatched", note=note[:2000]))
            await session.commit()
        log.info("report by %s (%s) not taken: %s", reporter, source, note)

    async def _take(self, reporter: str, source: str, kind: str, match: Match, note: str,
                    now: datetime) -> Taken:
        # TODO: The lock that keeps two reports of a new campaign from opening two
        # campaigns is per process; with several nodes taking reports at once a campaign
        # can be opened twice and judged twice (each acting consistently on its copies).
        async with self._clustering:
            async with self.store.session() as session:
                earlier = await session.scalar(select(UserReport).where(
                    UserReport.reporter == reporter, UserReport.queue_id == match.queue_id,
                    UserReport.cluster_id.is_not(None)))
                if earlier is not None:
                    cluster = await session.get(ReportCluster, earlier.cluster_id)
                    return Taken(earlier.id, earlier.cluster_id, cluster.status if cluster
                                 else earlier.status, earlier.matched_by, match.queue_id, True)
            cluster, added = await self._cluster_for(match.queue_id, now)
            async with self.store.session() as session:
                record = await session.scalar(select(MessageRecord.message_id).where(
                    MessageRecord.queue_id == match.queue_id))
                report = UserReport(reporter=reporter, reported_at=now, source=source,
                                    kind=kind[:16], queue_id=match.queue_id,
                                    message_id=(record or "")[:998], matched_by=match.how,
                                    cluster_id=cluster.id, status="matched",
                                    delivered_at=match.delivered_at, note=note[:2000])
                session.add(report)
                await session.commit()
                report_id = report.id
        log.info("report %d by %s (%s) matched %s by %s; campaign %d (%s)", report_id,
                 reporter, source, match.queue_id, match.how, cluster.id, cluster.status)
        if cluster.status == "pending":
            self.enqueue_analysis(cluster.id)
        elif cluster.status in ("acted", "decided") and added:
            await self.act(cluster.id)
        # Sent once the campaign is decided; this covers a decision made while the
        # report was being recorded (a notification claims its report first).
        self.enqueue_notify(report_id)
        return Taken(report_id, cluster.id, cluster.status, match.how, match.queue_id)

    async def _keys(self, queue_id: str) -> tuple[str, str, MessageRecord | None]:
        async with self.store.session() as session:
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == queue_id))
        if record is None:
            return "", "", None
        sender = (record.header_from or record.mail_from).lower()
        raw = await asyncio.to_thread(self.gateway.spool.message_bytes, queue_id)
        text = ""
        if raw is not None:
            text = await asyncio.to_thread(lambda: self.gateway.parse(raw).text)
        domain = sender.rpartition("@")[2]
        return subject_key(domain, record.subject, queue_id), body_key(domain, text), record

    async def _cluster_for(self, queue_id: str, now: datetime) -> tuple[ReportCluster, bool]:
        """_cluster_for - the campaign a reported message belongs to, opened if new."""
        skey, bkey, record = await self._keys(queue_id)
        since = now - timedelta(seconds=self.settings.cluster_window)
        async with self.store.session() as session:
            keys = [ReportCluster.subject_key == skey]
            if bkey:
                keys.append(ReportCluster.body_key == bkey)
            cluster = await session.scalar(select(ReportCluster).where(
                or_(*keys), ReportCluster.created_at >= since)
                .order_by(ReportCluster.id.desc()).limit(1))
            if cluster is not None:
                added = queue_id not in cluster.queue_ids
                if added:
                    cluster.queue_ids = list(cluster.queue_ids) + [queue_id]
                    await session.commit()
                return cluster, added
        core, related = await campaign(self.store, queue_id, self.settings.cluster_window,
                                       own_domains(self.gateway.settings))
        async with self.store.session() as session:
            first = await session.scalar(select(Copy.delivered_at).where(
                Copy.queue_id.in_(core)).order_by(Copy.delivered_at).limit(1))
            cluster = ReportCluster(
                created_at=now, subject_key=skey, body_key=bkey, queue_ids=core,
                sender=((record.header_from or record.mail_from) if record else "")[:320],
                subject=(record.subject if record else "")[:2000], status="pending",
                evidence={"related": related[:5000]}, first_delivered_at=first)
            session.add(cluster)
            await session.commit()
        return cluster, True

    # Analysis.

    def enqueue_analysis(self, cluster_id: int) -> None:
        if self.loop is not None:
            self._analyse_task(cluster_id)
        else:
            self._spawn(self.analyse(cluster_id))

    def enqueue_notify(self, report_id: int, again: bool = False) -> None:
        if self.loop is not None:
            self._notify_task(report_id, again)
        else:
            self._spawn(self.notify(report_id, again))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._inline.add(task)
        task.add_done_callback(self._inline.discard)

    async def drain(self) -> None:
        """drain - wait for the steps running on this event loop (CLI, benchmarks)."""
        while self._inline:
            await asyncio.gather(*list(self._inline), return_exceptions=True)

    async def analyse(self, cluster_id: int) -> str:
        """analyse - judge a pending campaign once; act when confident; its status."""
        async with self.store.session() as session:
            claimed = await session.execute(update(ReportCluster).where(
                ReportCluster.id == cluster_id, ReportCluster.status == "pending")
                .values(status="analysing"))
            await session.commit()
            if claimed.rowcount != 1:
                return "taken"
            cluster = await session.get(ReportCluster, cluster_id)
        try:
            outcome, _ = await analysis.reanalyse(self.gateway, cluster.queue_ids[0])
        except analysis.AnalysisError as error:
            outcome = Outcome(CLEAN, 0.0, "", {"error": str(error)})
        except Exception as error:
            # Tried again by the task queue; after the last try an analyst decides.
            failures = int(cluster.evidence.get("failures", 0)) + 1
            log.exception("campaign %d: analysis failed (%d of %d)", cluster_id, failures,
                          ANALYSIS_TRIES)
            if failures >= ANALYSIS_TRIES or self.loop is None:
                await self._to_analyst(cluster_id, Outcome(CLEAN, 0.0, "", {
                    "error": f"analysis failed: {type(error).__name__}: {error}"[:500],
                    "failures": failures}))
                return "analyst"
            async with self.store.session() as session:
                stored = await session.get(ReportCluster, cluster_id)
                stored.status = "pending"
                stored.evidence = {**stored.evidence, "failures": failures}
                await session.commit()
            raise
        if outcome.confidence < self.settings.min_confidence:
            await self._to_analyst(cluster_id, outcome)
            return "analyst"
        await self.decide(cluster_id, outcome, "analysis")
        await self.act(cluster_id)
        await self.notify_all(cluster_id)
        return "acted"

    async def _to_analyst(self, cluster_id: int, outcome: Outcome) -> None:
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            cluster.status, cluster.verdict = "analyst", outcome.verdict
            cluster.confidence = outcome.confidence
            cluster.evidence = {**cluster.evidence, **outcome.evidence,
                                "category": outcome.category}
            for report in (await session.scalars(select(UserReport).where(
                    UserReport.cluster_id == cluster_id))).all():
                report.status = "analyst"
            await session.commit()
        log.info("campaign %d to the analyst queue: %s at confidence %.2f (below %.2f)",
                 cluster_id, outcome.verdict, outcome.confidence, self.settings.min_confidence)

    async def decide(self, cluster_id: int, outcome: Outcome, by: str) -> None:
        """decide - record the campaign's verdict (once, or again by an override)."""
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            cluster.verdict, cluster.confidence = outcome.verdict, outcome.confidence
            cluster.simulation = outcome.verdict == SIMULATION
            cluster.evidence = {**cluster.evidence, **outcome.evidence,
                                "category": outcome.category or
                                cluster.evidence.get("category", "")}
            cluster.status, cluster.decided_by = "decided", by[:200]
            cluster.decided_at = datetime.now(UTC)
            await session.commit()
        log.info("campaign %d decided %s (confidence %.2f) by %s", cluster_id,
                 outcome.verdict, outcome.confidence, by)

    async def override(self, cluster_id: int, verdict: str, by: str,
                       category: str = "") -> dict[str, Any]:
        """override - an analyst's verdict for a campaign; the actions are re-applied."""
        if verdict not in VERDICTS:
            raise SubmitError(422, f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            if cluster is None:
                raise SubmitError(404, f"no reported campaign {cluster_id}")
            previous = cluster.verdict
            category = category or cluster.evidence.get("category") or \
                ("phish" if verdict == MALICIOUS else "")
        await self.decide(cluster_id, Outcome(verdict, 1.0, category, {"overridden": previous}),
                          by)
        moved = await self.act(cluster_id)
        await self.notify_all(cluster_id, again=True)
        return {"cluster": cluster_id, "verdict": verdict, "previous": previous,
                "moved": moved}

    # Actions.

    async def _targets(self, session, cluster: ReportCluster) -> tuple[list[Copy], str | None]:
        """_targets - the copies a verdict moves, and the folder they go to."""
        folder = TARGET.get(cluster.verdict)
        if cluster.verdict == MALICIOUS:
            ids = list(cluster.queue_ids) + list(cluster.evidence.get("related", []))
        elif cluster.verdict == SPAM:
            ids = list(cluster.queue_ids)
        else:
            ids = []
        copies: list[Copy] = []
        for start in range(0, len(ids), 500):
            copies.extend((await session.scalars(select(Copy).where(
                Copy.queue_id.in_(ids[start:start + 500])))).all())
        if cluster.verdict == CLEAN:
            reports = (await session.execute(select(UserReport.queue_id, UserReport.reporter)
                                             .where(UserReport.cluster_id == cluster.id,
                                                    UserReport.status != "unmatched"))).all()
            for queue_id, reporter in reports:
                row = await session.scalar(select(Copy).where(
                    Copy.queue_id == queue_id, Copy.recipient == reporter))
                if row is not None:
                    copies.append(row)
        return copies, folder

    async def act(self, cluster_id: int) -> int:
        """act - apply the campaign's verdict to every copy; how many copies moved.

        Copies an earlier verdict of this campaign moved and the new one does
        not cover (an override) go back to the folder they were taken from.
        Every move goes through the retract/restore service, which records it
        and updates the index.
        """
        started = datetime.now(UTC)
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            if cluster is None or cluster.status not in ("decided", "acted"):
                return 0
            copies, folder = await self._targets(session, cluster)
            plan: dict[tuple[str, str], tuple[Copy, str]] = {}
            for row in copies:
                if folder is not None:
                    plan[(row.queue_id, row.recipient)] = (row, folder)
            earlier = (await session.scalars(select(ReportAction).where(
                ReportAction.cluster_id == cluster_id,
                ReportAction.outcome.in_(MOVED_OUTCOMES)).order_by(ReportAction.id))).all()
            origins: dict[tuple[str, str], str] = {}
            for action in earlier:
                origins.setdefault((action.queue_id, action.recipient), action.from_folder)
            for key, origin in origins.items():
                if key not in plan:
                    row = await session.scalar(select(Copy).where(
                        Copy.queue_id == key[0], Copy.recipient == key[1]))
                    if row is not None:
                        plan[key] = (row, origin or INBOX)
            verdict = cluster.verdict
        results = await self._move(plan, verdict, cluster_id)
        now = datetime.now(UTC)
        async with self.store.session() as session:
            for result in results:
                session.add(ReportAction(cluster_id=cluster_id, queue_id=result.queue_id,
                                         recipient=result.recipient, verdict=verdict,
                                         from_folder=result.from_folder,
                                         to_folder=result.to_folder, outcome=result.status,
                                         detail=result.error[:2000], at=now))
            cluster = await session.get(ReportCluster, cluster_id)
            cluster.status, cluster.acted_at = "acted", now
            for report in (await session.scalars(select(UserReport).where(
                    UserReport.cluster_id == cluster_id, UserReport.status != "unmatched"))
                    ).all():
                report.status = "acted"
            evidence = dict(cluster.evidence)
            await session.commit()
        moved = sum(1 for r in results if r.status in MOVED_OUTCOMES)
        await self._intel(cluster_id, verdict, evidence)
        if verdict == SPAM and self.settings.learn_spam and not evidence.get("learnt"):
            await self._learn(cluster_id)
        log.info("campaign %d (%s): %d of %d copies moved in %.2fs", cluster_id, verdict,
                 moved, len(plan), (datetime.now(UTC) - started).total_seconds())
        return moved

    async def _move(self, plan: dict[tuple[str, str], tuple[Copy, str]], verdict: str,
                    cluster_id: int) -> list[PullResult]:
        """_move - every planned move, folder by folder, through the retractor."""
        by_folder: dict[str, list[Copy]] = {}
        for row, folder in plan.values():
            by_folder.setdefault(folder, []).append(row)
        reason = f"user report: campaign {cluster_id} is {verdict}"
        results: list[PullResult] = []
        for folder, rows in by_folder.items():
            results += await self.retractor.move_all(rows, folder, reason,
                                                     actor="user-reports")
        return results

    async def _intel(self, cluster_id: int, verdict: str, evidence: dict[str, Any]) -> None:
        """_intel - a malicious campaign's URLs, files and sender go to the intelligence."""
        from mailward.intel.store import IndicatorError, NewIndicator

        intel = self.gateway.services.intel
        added = evidence.get("indicators", [])
        if verdict != MALICIOUS:
            for kind, value in added:
                await intel.remove(kind, value, INTEL_SOURCE)
            if added:
                await self._set_evidence(cluster_id, indicators=[])
            return
        if added:
            return
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            ids = list(cluster.queue_ids)
            urls = (await session.execute(select(MessageUrl.url, MessageUrl.domain).where(
                MessageUrl.queue_id.in_(ids[:500])).limit(500))).all()
            files = (await session.scalars(select(MessageFile.sha256).where(
                MessageFile.queue_id.in_(ids[:500])).limit(200))).all()
        own = own_domains(self.gateway.settings)
        category = "malware" if evidence.get("category") == "malware" else "phish"
        comment = f"reported campaign {cluster_id}: {cluster.subject}"[:500]
        wanted: list[tuple[str, str]] = []
        for url, domain in urls:
            if not any(domain == d or domain.endswith("." + d) for d in own):
                wanted.append(("url", url))
        wanted += [("sha256", digest) for digest in dict.fromkeys(files)]
        sender = cluster.sender.lower()
        if sender and not self.gateway.is_local(sender):
            wanted.append(("sender", sender))
        items = []
        for kind, value in dict.fromkeys(wanted):
            try:
                items.append(NewIndicator(kind, value, source=INTEL_SOURCE,
                                          category=category,
                                          confidence=int(round(100 * cluster.confidence)),
                                          comment=comment))
            except IndicatorError:
                continue
        kept = []
        for item in items:
            try:
                await intel.add_many([item])
                kept.append([item.kind, item.value])
            except IndicatorError as error:
                log.info("campaign %d: indicator %s not added: %s", cluster_id, item.value,
                         error)
        # Adding them moves the intelligence generation, which starts the post-delivery
        # retro-scan over copies of other campaigns that carry them.
        await self._set_evidence(cluster_id, indicators=kept)
        log.info("campaign %d: %d indicator(s) added to the intelligence", cluster_id,
                 len(kept))

    async def _set_evidence(self, cluster_id: int, **values: Any) -> None:
        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            cluster.evidence = {**cluster.evidence, **values}
            await session.commit()

    async def _learn(self, cluster_id: int) -> None:
        from mailward.reports.learning import learn

        async with self.store.session() as session:
            cluster = await session.get(ReportCluster, cluster_id)
            ids = list(cluster.queue_ids)[:LEARN_AT_MOST]
        messages = []
        for queue_id in ids:
            raw = await asyncio.to_thread(self.gateway.spool.message_bytes, queue_id)
            if raw is not None:
                messages.append(await asyncio.to_thread(self.gateway.parse, raw))
        learnt = await learn(self.gateway, messages, spam=True)
        await self._set_evidence(cluster_id, learnt=learnt)

    # Answers.

    async def notify_all(self, cluster_id: int, again: bool = False) -> None:
        if not self.settings.notify:
            return
        async with self.store.session() as session:
            query = select(UserReport.id).where(UserReport.cluster_id == cluster_id,
                                                UserReport.status != "unmatched")
            if not again:
                query = query.where(UserReport.notified_at.is_(None))
            ids = (await session.scalars(query)).all()
        for report_id in ids:
            self.enqueue_notify(report_id, again)

    async def notify(self, report_id: int, again: bool = False) -> str:
        """notify - the outcome email of one report, once (again after an override)."""
        async with self.store.session() as session:
            report = await session.get(UserReport, report_id)
            cluster = await session.get(ReportCluster, report.cluster_id) \
                if report and report.cluster_id else None
            if report is None or cluster is None or cluster.status != "acted":
                return "not decided"
            if not again:
                claimed = await session.execute(update(UserReport).where(
                    UserReport.id == report_id, UserReport.notified_at.is_(None))
                    .values(notified_at=datetime.now(UTC)))
                await session.commit()
                if claimed.rowcount != 1:
                    return "already told"
            moved = (await session.scalars(select(ReportAction.recipient).where(
                ReportAction.cluster_id == cluster.id,
                ReportAction.outcome.in_(MOVED_OUTCOMES + ("already",))))).all()
        context = {"subject": cluster.subject, "sender": cluster.sender,
                   "category": cluster.evidence.get("category", ""),
                   "copies": max(1, len(set(moved))),
                   "reasons": self._reasons(cluster.evidence)}
        try:
            where = await self.notifier.send(report.reporter, cluster.verdict, context)
        except Exception:
            if not again:
                async with self.store.session() as session:
                    await session.execute(update(UserReport).where(
                        UserReport.id == report_id).values(notified_at=None))
                    await session.commit()
            raise
        if again:
            async with self.store.session() as session:
                await session.execute(update(UserReport).where(
                    UserReport.id == report_id).values(notified_at=datetime.now(UTC)))
                await session.commit()
        log.info("report %d: outcome (%s) sent to %s via %s", report_id, cluster.verdict,
                 report.reporter, where)
        return where

    def _reasons(self, evidence: dict[str, Any]) -> list[str]:
        reasons = []
        for finding in sorted(evidence.get("findings", []), key=lambda f: -f.get("score", 0)):
            if finding.get("score", 0) <= 0:
                continue
            text = self.descriptions.get(finding.get("symbol", ""))
            if text and text not in reasons:
                reasons.append(text)
        return reasons

    # Receiving reports over SMTP.

    def reporting_address(self) -> str:
        return self.settings.address.strip().lower()

    async def receive_mail(self, envelope: "Envelope", raw: bytes) -> "Reply | None":
        """receive_mail - take mail to the reporting address; the SMTP reply, or None.

        When the reporting address is one of several recipients, the report
        is taken and the message goes on to the others (None is returned).
        """
        from mailward.gateway import Reply

        address = self.reporting_address()
        if not address or address not in (r.lower() for r in envelope.rcpt_to):
            return None
        others = [r for r in envelope.rcpt_to if r.lower() != address]
        reporter = envelope.mail_from.lower()
        if not self._from_own_servers(envelope.peer_ip):
            log.warning("%s: report from %s refused: %s is not one of the organisation's "
                        "mail servers (reports.mailbox_networks)", envelope.queue_id,
                        reporter or "<>", envelope.peer_ip or "-")
            reply = Reply(550, "5.7.1 Reports are taken from the organisation's own mail "
                               "servers only")
        elif not reporter or not self.gateway.is_local(reporter):
            reply = Reply(550, "5.7.1 Reports are taken from the organisation's own "
                               "addresses only")
        else:
            reply = await self._mail_report(reporter, raw, envelope.queue_id)
        if others:
            envelope.rcpt_to = others
            return None
        return reply

    def _from_own_servers(self, ip: str) -> bool:
        """_from_own_servers - a report by mail must come through the organisation's servers.

        The envelope sender names the reporter, and anyone can write any
        envelope sender; only mail relayed by the organisation's own servers
        (which authenticated their user) says truly who reports.
        """
        import ipaddress

        from mailward.connection.lists import in_networks

        networks = self.settings.mailbox_networks or \
            self.gateway.settings.auth.trusted_networks
        return in_networks(ip, [ipaddress.ip_network(n) for n in networks]) is not None

    async def _mail_report(self, reporter: str, raw: bytes, queue_id: str) -> "Reply":
        from mailward.gateway import Reply

        source = "arf" if b"feedback-report" in raw[:65536].lower() else "mailbox"
        try:
            taken = await self.submit(reporter, source, raw=raw, wrapped=True)
        except SubmitError as error:
            log.info("%s: report by %s refused: %s", queue_id, reporter, error.text)
            if error.status == 429:
                return Reply(450, f"4.7.1 {error.text}")
            if error.status == 413:
                return Reply(552, f"5.3.4 {error.text}")
            return Reply(550, f"5.6.0 Report not taken: {error.text}")
        return Reply(250, f"2.0.0 Ok: report {taken.report_id} taken ({taken.status})")

    # The task queue.

    def _call(self, coroutine) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _analyse_job(self, cluster_id: int) -> None:
        self._call(self.analyse(cluster_id))

    def _notify_job(self, report_id: int, again: bool = False) -> None:
        self._call(self.notify(report_id, again))

    async def run(self) -> None:
        """run - the task-queue workers of this node, until cancelled."""
        self.loop = asyncio.get_running_loop()
        await self.recover()
        try:
            await run_consumer(self.huey, self.settings.workers)
        finally:
            self.loop = None

    async def recover(self) -> None:
        """recover - campaigns left analysing by a stopped process are analysed again."""
        async with self.store.session() as session:
            await session.execute(update(ReportCluster).where(
                ReportCluster.status == "analysing").values(status="pending"))
            await session.commit()
            pending = (await session.scalars(select(ReportCluster.id).where(
                ReportCluster.status == "pending"))).all()
        for cluster_id in pending:
            self.enqueue_analysis(cluster_id)


def _symbol_descriptions() -> dict[str, str]:
    from mailward.registry import check_classes

    descriptions: dict[str, str] = {}
    for cls in check_classes():
        descriptions.update(getattr(cls, "symbols", {}) or {})
    return descriptions


def service_of(gateway: "Gateway") -> ReportService:
    """service_of - the gateway's report service, made on first use."""
    service = gateway.services.extras.get("reports")
    if service is None:
        service = ReportService(gateway)
        gateway.services.extras["reports"] = service
    return service


async def run(gateway: "Gateway") -> None:
    """run - take reports over SMTP and run the report task queue (``mailward serve``)."""
    service = service_of(gateway)
    gateway.intakes.append(service.receive_mail)
    await service.run()
