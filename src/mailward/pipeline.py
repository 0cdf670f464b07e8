"""The pipeline: checks run over one envelope and message, the policy decides.

The pipeline knows checks only through the Check protocol and the registry
(``mailward.registry``), so adding a check touches no code here. Checks of
the session stages (connect, helo, mail, rcpt) run while the SMTP client
waits at that command; checks of the data stage run once the message is
spooled, in waves ordered only by what each check says it reads (``after``),
the checks of one wave at once.

SECURITY: one message must never take the gateway down or run forever. The
whole judgement runs under a deadline; an exception in a check is caught at
the message boundary and turned into PipelineError, which the SMTP server
answers with 451 while keeping the bytes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, runtime_checkable

from mailward.envelope import Envelope
from mailward.hold import HoldRequest
from mailward.message import Message
from mailward.policy import Policy
from mailward.verdict import Finding, Verdict

if TYPE_CHECKING:
    from mailward.services import Services

log = logging.getLogger("mailward.pipeline")


class Stage(enum.StrEnum):
    """When a check runs: at an SMTP command, or on the whole message."""

    CONNECT = "connect"
    HELO = "helo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


@dataclass(slots=True)
class Task:
    """What one check run sees: the envelope, the message, shared services.

    ``findings`` holds what earlier stages and waves found; ``scratch`` lets
    a check publish derived results (by its own name) for later checks;
    ``holds`` collects requests that the message wait for an outside verdict.
    ``headers`` are fields to add to the delivered message, carried by the
    verdict.
    """

    envelope: Envelope
    services: "Services"
    message: Message | None = None
    findings: list[Finding] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    holds: list[HoldRequest] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def log(self) -> logging.LoggerAdapter:
        return QueueLog(log, self.envelope.queue_id)

    def found(self, symbol: str) -> bool:
        return any(f.symbol == symbol for f in self.findings)


class QueueLog(logging.LoggerAdapter):
    """A logger adapter that puts the queue id on every line."""

    def __init__(self, logger: logging.Logger, queue_id: str) -> None:
        super().__init__(logger, {"queue_id": queue_id})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["queue_id"] = self.extra["queue_id"]
        return f"{self.extra['queue_id']}: {msg}", kwargs


@runtime_checkable
class Check(Protocol):
    """One named unit of judgement.

    ``symbols`` maps every symbol the check can emit to a one-line
    description; ``after`` names the checks whose findings it reads.
    ``from_services`` builds the check from the configuration, or returns
    None when the configuration turns it off.
    """

    name: ClassVar[str]
    stage: ClassVar[Stage]
    symbols: ClassVar[dict[str, str]]
    after: ClassVar[tuple[str, ...]]

    async def check(self, task: Task) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class Outage:
    """A service outside the process that a check needs and that does not answer.

    ``stops_mail`` says that while it lasts every message it would have judged
    is answered 451 (the check's on_fail is tempfail), so the node is not ready.
    """

    name: str
    detail: str
    stops_mail: bool = True

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}"


@runtime_checkable
class Probed(Protocol):
    """A check that relies on a daemon (clamd...) and can ask whether it answers."""

    name: ClassVar[str]

    async def probe(self) -> list[Outage]: ...


# A message up to this size is parsed and prepared on the event loop: most
# mail is, and the trip to a thread costs about a third of what preparing
# such a message does. The most costly shapes of this size (unclosed tags
# nested to the depth cap) hold the loop for tens of milliseconds.
INLINE_BYTES = 16 * 1024


class PipelineError(Exception):
    """A message could not be judged; the sender is told to retry (451)."""


class Pipeline:
    """Runs the registered checks and asks the policy for a verdict."""

    def __init__(self, checks: list[Check], policy: Policy, deadline: float) -> None:
        self.checks = checks
        self.policy = policy
        self.deadline = deadline
        self.by_stage: dict[Stage, list[Check]] = {stage: [] for stage in Stage}
        for item in checks:
            self.by_stage[item.stage].append(item)
        self.waves = {stage: _waves(items) for stage, items in self.by_stage.items()}

    async def run_stage(self, stage: Stage, task: Task) -> list[Finding]:
        """run_stage - the checks of one session stage; their findings."""
        found: list[Finding] = []
        for wave in self.waves[stage]:
            for item in wave:
                result = await self._run_one(item, task)
                task.findings.extend(result)
                found.extend(result)
        return found

    async def judge(self, task: Task, parse: Callable[[], Message] | None = None,
                    size: int | None = None) -> Verdict:
        """judge - every data-stage check under the deadline, then the policy.

        Without ``task.message``, ``parse`` makes it, under the same deadline.
        ``size`` is the message's size in bytes when known: up to
        ``INLINE_BYTES`` it is parsed and prepared on the event loop.
        """
        assert task.message is not None or parse is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.deadline):
                # The message is parsed and its expensive views computed once, off
                # the event loop in one trip to a thread, or on it when small.
                # TODO: a thread cannot be stopped, so when the deadline passes the
                # views of the message go on being computed after the gateway's
                # concurrency slot is given back, on a thread of the default executor
                # that spool reads and writes also use; enough such messages at once
                # would delay every message's spooling until their work ends.
                if size is not None and size <= INLINE_BYTES:
                    task.message = _prepared(task.message, parse)
                else:
                    task.message = await asyncio.to_thread(_prepared, task.message, parse)
                for wave in self.waves[Stage.DATA]:
                    results = await asyncio.gather(*(self._run_one(c, task) for c in wave))
                    for found in results:
                        task.findings.extend(found)
        except TimeoutError:
            raise PipelineError(f"deadline of {self.deadline:g}s passed") from None
        task.timings["pipeline"] = time.perf_counter() - started
        verdict = self.policy.decide(task.findings, sender=_sender(task),
                                     trusted_peer=_trusted_peer(task))
        verdict.headers = list(task.headers)
        return verdict

    async def _run_one(self, item: Check, task: Task) -> list[Finding]:
        started = time.perf_counter()
        try:
            found = await item.check(task)
        except (PipelineError, asyncio.CancelledError, TimeoutError):
            raise
        except Exception as error:
            task.log.exception("check %s failed", item.name)
            raise PipelineError(f"check {item.name} failed: "
                                f"{type(error).__name__}: {error}") from error
        task.timings[item.name] = time.perf_counter() - started
        return list(found)


def _prepared(message: Message | None, parse: Callable[[], Message] | None) -> Message:
    """_prepared - the message (parsed first when there is none yet), prepared."""
    if message is None:
        assert parse is not None
        message = parse()
    prepare(message)
    return message


def prepare(message: Message) -> None:
    """prepare - compute the views most checks read (text, URLs, files)."""
    message.text
    message.from_addresses
    message.urls
    message.files


def _sender(task: Task) -> str:
    """_sender - the address allow and block lists apply to.

    The RFC 5322.From a reader sees; when it is missing or malformed, none at
    all (falling back to the envelope sender would let a forged header pick
    the address the lists see).
    """
    message = task.message
    if message is None:
        return task.envelope.mail_from
    addresses = message.from_addresses
    return addresses[0].address if len(addresses) == 1 else ""


def _trusted_peer(task: Task) -> bool:
    """_trusted_peer - the message came from a relay of ``auth.trusted_networks``."""
    from mailward.auth import is_trusted_peer

    return is_trusted_peer(task.services.settings.auth.trusted_networks,
                           task.envelope.peer_ip)


def _waves(checks: list[Check]) -> list[list[Check]]:
    """_waves - group checks so that each runs after every check it names."""
    names = {c.name for c in checks}
    pending = {c.name: c for c in checks}
    done: set[str] = set()
    waves: list[list[Check]] = []
    while pending:
        ready = [c for c in pending.values()
                 if all(dep in done or dep not in names for dep in c.after)]
        if not ready:
            raise ValueError(f"checks depend on each other in a cycle: {sorted(pending)}")
        waves.append(ready)
        for item in ready:
            done.add(item.name)
            del pending[item.name]
    return waves
