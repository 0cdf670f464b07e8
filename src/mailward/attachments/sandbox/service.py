"""The sandbox service: jobs stored, run on the task queue, messages held for them.

When the attachment check leaves a file suspicious, the gateway holds the
message (already answered 250) and hands the files here (``hold``). Each
file becomes a stored job (``sandbox_jobs``) and a task on the queue; a
second task is scheduled for the message's deadline. Workers run the
detonations (several at once, up to ``sandbox.concurrency``); CAPE jobs are
polled by re-scheduled tasks. When the last job of a message reports, or
the deadline task fires first, the findings go to ``Gateway.resolve_hold``
and the policy decides again: deliver, tag or quarantine. A verdict that
arrives after the message was released is still stored, and a malicious
file's SHA-256 is added to the threat intelligence (source "sandbox") so
that the post-delivery response finds every copy.

The task queue is huey, an existing engine: its SQLite storage in the data
directory for one node (the embedded default, nothing more to run), its
Redis storage for several nodes sharing the work. Tasks are stored, so a
scheduled deadline survives a restart; a job that was running when the
process died is run again at start-up (``recover``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mailward.attachments.sandbox import CLEAN, ERROR, MALICIOUS, SUSPICIOUS, Report, Sample, Sandbox, SandboxError
from mailward.attachments.sandbox.confine import Limits, isolation_available
from mailward.config import ConfigError
from mailward.hold import HoldRequest
from mailward.pipeline import QueueLog
from mailward.store.models import MessageRecord, SandboxJob
from mailward.taskqueue import make_queue, run_consumer
from mailward.verdict import Category, Finding

if TYPE_CHECKING:
    from mailward.attachments.files import FileNode
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.services import Services
    from mailward.verdict import Verdict

log = logging.getLogger("mailward.sandbox")

SYMBOL_FOR = {MALICIOUS: "ATTACH_SANDBOX_MALICIOUS", SUSPICIOUS: "ATTACH_SANDBOX_SUSPICIOUS",
              CLEAN: "ATTACH_SANDBOX_CLEAN", ERROR: "ATTACH_SANDBOX_ERROR"}
SYMBOLS = {
    "ATTACH_SANDBOX_MALICIOUS": "the sandbox saw a file act maliciously",
    "ATTACH_SANDBOX_SUSPICIOUS": "the sandbox saw a file do something suspicious",
    "ATTACH_SANDBOX_CLEAN": "the sandbox saw nothing of note",
    "ATTACH_SANDBOX_ERROR": "the sandbox could not analyse a file",
    "ATTACH_SANDBOX_TIMEOUT": "no sandbox verdict before the deadline",
}


def build_backends(services: "Services") -> list[Sandbox]:
    """build_backends - the configured backends; a named one that cannot run is an error."""
    from mailward.attachments.sandbox.boxjs import BoxJsSandbox, find_boxjs
    from mailward.attachments.sandbox.browser import BrowserSandbox

    settings = services.settings.sandbox
    wanted = set(settings.backends)
    auto = "auto" in wanted
    isolate = settings.isolate_network
    if isolate and (auto or wanted & {"browser", "boxjs"}) and not isolation_available():
        if not auto:
            raise ConfigError("sandbox.isolate_network: unshare cannot create user and "
                              "network namespaces here; enable them or set it to false")
        log.warning("sandbox: no network namespaces (unshare); built-in backends are off")
        return _cape(settings, wanted)
    workdir = services.data_dir / "sandbox" / "work"
    limits = Limits(settings.run_seconds, settings.memory, settings.max_file_size * 4,
                    network=not isolate)
    backends: list[Sandbox] = []
    if auto or "browser" in wanted:
        if BrowserSandbox.available(settings.chromium):
            backends.append(BrowserSandbox(settings.chromium, workdir, limits))
        elif not auto:
            raise ConfigError(f"sandbox.backends: browser needs Chromium at "
                              f"{settings.chromium} and the playwright package")
    if auto or "boxjs" in wanted:
        program = find_boxjs(settings.boxjs, services.data_dir)
        if program:
            backends.append(BoxJsSandbox(program, workdir, limits))
        elif not auto:
            raise ConfigError("sandbox.boxjs: box-js not found (npm install box-js)")
    if "cape" in wanted:
        if not settings.cape_url:
            raise ConfigError("sandbox.cape_url: must be set when backends include cape")
        backends.extend(_cape(settings, wanted))
    return backends


def _cape(settings: Any, wanted: set[str]) -> list[Sandbox]:
    from mailward.attachments.sandbox.cape import CapeSandbox

    if "cape" not in wanted or not settings.cape_url:
        return []
    return [CapeSandbox(settings.cape_url, settings.cape_token, settings.cape_malicious_score,
                        settings.cape_suspicious_score)]


class SandboxService:
    """Holds messages for their files' sandbox verdicts (a Holder)."""

    name = "sandbox"

    def __init__(self, services: "Services", backends: list[Sandbox]) -> None:
        self.services = services
        self.settings = services.settings.sandbox
        self.backends = {backend.name: backend for backend in backends}
        self.samples = services.data_dir / "sandbox" / "samples"
        self.samples.mkdir(parents=True, exist_ok=True)
        self.node = socket.gethostname()[:255]
        self.huey = make_queue("sandbox", self.settings.queue, services.data_dir,
                               "sandbox.queue")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._detonate = self.huey.task(name="sandbox.detonate")(self._detonate_job)
        self._poll = self.huey.task(name="sandbox.poll")(self._poll_job)
        self._deadline = self.huey.task(name="sandbox.deadline")(self._deadline_reached)

    @classmethod
    def from_services(cls, services: "Services") -> "SandboxService | None":
        """from_services - the service, registered with the gateway; None with no backend."""
        backends = build_backends(services)
        if not backends:
            log.info("sandbox: no backend available; suspicious files are judged statically")
            return None
        service = cls(services, backends)
        gateway = services.extras.get("gateway")
        if gateway is not None:
            gateway.holders[service.name] = service
        log.info("sandbox: backends %s", ", ".join(service.backends))
        return service

    # What the attachment check asks.

    def backend_for(self, sample: Sample) -> Sandbox | None:
        for backend in self.backends.values():
            if backend.accepts(sample):
                return backend
        return None

    def accepts(self, node: "FileNode") -> bool:
        if node.size > self.settings.max_file_size:
            return False
        return self.backend_for(Sample(node.name, b"", node.kind)) is not None

    def item_for(self, node: "FileNode") -> dict[str, Any]:
        """item_for - keep the file's bytes for the job; what the hold request names."""
        path = self.samples / node.sha256
        if not path.exists():
            temporary = path.with_name(f".{node.sha256}.tmp")
            temporary.write_bytes(node.data)
            temporary.replace(path)
        backend = self.backend_for(Sample(node.name, b"", node.kind))
        return {"sha256": node.sha256, "name": node.name[:500], "path": node.path[:2000],
                "kind": node.kind, "size": node.size, "backend": backend.name if backend else ""}

    # Holder protocol.

    async def hold(self, envelope: "Envelope", message: "Message", verdict: "Verdict",
                   requests: list[HoldRequest]) -> None:
        """hold - store one job per file, queue them and the deadline."""
        qid = envelope.queue_id
        now = datetime.now(UTC)
        deadline = now + timedelta(seconds=self.settings.deadline)
        items = [item for request in requests for item in request.items if item["backend"]]
        ids: list[int] = []
        try:
            async with self.services.store.session() as session:
                for item in items:
                    job = SandboxJob(queue_id=qid, sha256=item["sha256"], name=item["name"],
                                     path=item["path"], kind=item["kind"][:32],
                                     backend=item["backend"], status="queued", created_at=now,
                                     deadline_at=deadline, node=self.node)
                    session.add(job)
                    await session.flush()
                    ids.append(job.id)
                await session.commit()
            await asyncio.to_thread(self._enqueue, qid, ids, self.settings.deadline)
        except Exception as error:
            QueueLog(log, qid).exception("sandbox submission failed")
            await self._resolve(qid, [Finding("ATTACH_SANDBOX_ERROR", Category.MALWARE,
                                              f"submission failed: {error}")], "sandbox error")
            return
        QueueLog(log, qid).info("held for the sandbox: %d file(s), deadline %s", len(ids),
                                deadline.isoformat(timespec="seconds"))

    def _enqueue(self, queue_id: str, ids: list[int], deadline: float) -> None:
        for job_id in ids:
            self._detonate(job_id)
        self._deadline.schedule(args=(queue_id,), delay=deadline)

    async def run(self) -> None:
        """run - the task-queue workers of this node, until cancelled."""
        self.loop = asyncio.get_running_loop()
        await self.recover()
        await run_consumer(self.huey, self.settings.concurrency)

    async def recover(self) -> None:
        """recover - run again what this node was running; expire what is overdue."""
        now = datetime.now(UTC)
        async with self.services.store.session() as session:
            jobs = (await session.scalars(select(SandboxJob).where(
                SandboxJob.status.in_(("queued", "running")), SandboxJob.node == self.node))).all()
            held = (await session.scalars(select(MessageRecord.queue_id).where(
                MessageRecord.state == "held"))).all()
        for job in jobs:
            if job.status == "running":
                log.info("%s: sandbox job %d was running at the last stop; again", job.queue_id,
                         job.id)
                await asyncio.to_thread(self._detonate, job.id)
        for queue_id in held:
            deadlines = await self._deadlines(queue_id)
            if not deadlines:
                await self._resolve(queue_id, [Finding(
                    "ATTACH_SANDBOX_ERROR", Category.MALWARE,
                    "held without sandbox jobs (stopped while submitting)")], "sandbox error")
            elif max(deadlines) <= now:
                await self.expire(queue_id)

    async def _deadlines(self, queue_id: str) -> list[datetime]:
        async with self.services.store.session() as session:
            return list((await session.scalars(select(SandboxJob.deadline_at).where(
                SandboxJob.queue_id == queue_id))).all())

    # Tasks: these run in the queue's worker threads.

    def _call(self, coroutine) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _detonate_job(self, job_id: int) -> None:
        job = self._call(self._job(job_id, "running"))
        if job is None:
            return
        backend = self.backends.get(job.backend)
        try:
            if backend is None:
                raise SandboxError(f"backend {job.backend} is not configured on {self.node}")
            data = (self.samples / job.sha256).read_bytes()
            ticket = backend.submit(Sample(job.name, data, job.kind))
            report = backend.poll(ticket)
        except (SandboxError, OSError) as error:
            report, ticket = Report(ERROR, str(error)[:500]), ""
        except Exception as error:  # a backend bug is that job's error, not the worker's
            log.exception("%s: sandbox job %d failed", job.queue_id, job_id)
            report, ticket = Report(ERROR, f"{type(error).__name__}: {error}"[:500]), ""
        if report is None:
            self._call(self._set_ticket(job_id, ticket))
            self._poll.schedule(args=(job_id,), delay=self.settings.cape_poll)
            return
        self._call(self.finish(job_id, report))

    def _poll_job(self, job_id: int) -> None:
        job = self._call(self._job(job_id, None))
        if job is None or job.status == "done":
            return
        backend = self.backends.get(job.backend)
        try:
            if backend is None:
                raise SandboxError(f"backend {job.backend} is not configured")
            report = backend.poll(job.ticket)
        except SandboxError as error:
            report = Report(ERROR, str(error)[:500])
        if report is None:
            if datetime.now(UTC) > job.deadline_at + timedelta(hours=24):
                report = Report(ERROR, "the sandbox did not report within a day")
            else:
                self._poll.schedule(args=(job_id,), delay=self.settings.cape_poll)
                return
        self._call(self.finish(job_id, report))

    def _deadline_reached(self, queue_id: str) -> None:
        self._call(self.expire(queue_id))

    # Job records (on the gateway's event loop).

    async def _job(self, job_id: int, mark: str | None) -> SandboxJob | None:
        async with self.services.store.session() as session:
            job = await session.get(SandboxJob, job_id)
            if job is None or job.status == "done":
                return None
            if mark:
                job.status, job.started_at = mark, datetime.now(UTC)
                await session.commit()
            return job

    async def _set_ticket(self, job_id: int, ticket: str) -> None:
        async with self.services.store.session() as session:
            job = await session.get(SandboxJob, job_id)
            if job is not None:
                job.ticket, job.status = ticket[:500], "polling"
                await session.commit()

    async def finish(self, job_id: int, report: Report) -> None:
        """finish - store the report; add a malicious hash to the intel; settle."""
        async with self.services.store.session() as session:
            job = await session.get(SandboxJob, job_id)
            if job is None or job.status == "done":
                return
            job.status, job.verdict = "done", report.verdict
            job.summary, job.report = report.summary[:4000], report.as_dict()
            job.finished_at = datetime.now(UTC)
            await session.commit()
        qlog = QueueLog(log, job.queue_id)
        qlog.info("sandbox %s: %s is %s (%s) in %.1fs", job.backend, job.path, report.verdict,
                  report.summary[:200], report.seconds)
        if report.verdict == MALICIOUS:
            await self.services.intel.add("sha256", job.sha256, source="sandbox",
                                          category="malware",
                                          comment=f"{job.backend}: {report.summary}"[:1000])
        await self.settle(job.queue_id)

    async def _jobs(self, queue_id: str) -> list[SandboxJob]:
        async with self.services.store.session() as session:
            return list((await session.scalars(select(SandboxJob).where(
                SandboxJob.queue_id == queue_id).order_by(SandboxJob.id))).all())

    async def settle(self, queue_id: str) -> None:
        """settle - once every job of a message has reported, decide the message."""
        jobs = await self._jobs(queue_id)
        if not jobs or any(job.status != "done" for job in jobs):
            return
        await self._resolve(queue_id, [job_finding(job) for job in jobs], "sandbox verdict")

    async def expire(self, queue_id: str) -> None:
        """expire - the deadline passed: decide with what has reported, the rest timed out."""
        findings = []
        for job in await self._jobs(queue_id):
            if job.status == "done":
                findings.append(job_finding(job))
            else:
                findings.append(Finding("ATTACH_SANDBOX_TIMEOUT", Category.MALWARE,
                                        f"sandbox time-out: {job.path}: no verdict from "
                                        f"{job.backend} by the deadline",
                                        data={"sha256": job.sha256, "path": job.path}))
        if any(f.symbol == "ATTACH_SANDBOX_TIMEOUT" for f in findings):
            await self._resolve(queue_id, findings, "sandbox time-out")

    async def _resolve(self, queue_id: str, findings: list[Finding], note: str) -> None:
        gateway = self.services.extras.get("gateway")
        if gateway is None:
            return
        verdict = await gateway.resolve_hold(queue_id, findings, note)
        if verdict is None:
            QueueLog(log, queue_id).info("%s arrived after the message was released; "
                                         "recorded with its jobs", note)


def job_finding(job: SandboxJob) -> Finding:
    """job_finding - the finding a finished job contributes to its message's verdict."""
    symbol = SYMBOL_FOR.get(job.verdict, "ATTACH_SANDBOX_ERROR")
    return Finding(symbol, Category.MALWARE, f"{job.backend}: {job.path}: {job.summary}"[:2000],
                   data={"sha256": job.sha256, "path": job.path, "backend": job.backend,
                         "verdict": job.verdict})
