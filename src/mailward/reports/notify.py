"""Outcome emails: the reporter is told, in plain words, what their report did.

One Jinja2 template per verdict and language (``<language>/<verdict>.txt``:
a ``Subject:`` line, a blank line, the body), shipped in English, German
and French; ``reports.templates_dir`` overrides any of them and may add
languages. The language is the reporter's (``reports.languages``, by
address or @domain), else ``reports.language``, else English.

The email goes to ``reports.notify_relay`` when one is set, else through
the delivery queue like any mail mailward writes itself.

SECURITY: the reported subject and sender are written by an attacker.
They are shown with invisible and direction-changing characters made
visible, on one line, cut to a length; the Subject field is the template's,
never the attacker's text folded into a header.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from mailward.envelope import new_queue_id
from mailward.smtp.relay import RelayTarget, relay
from mailward.store.models import Delivery, MessageRecord
from mailward.verdict import Action, Verdict
from mailward.web.security import visible

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.reports")

KINDS = {
    "en": {"phish": "a phishing attempt", "malware": "malware",
           "impostor": "someone impersonating a person or company you know"},
    "de": {"phish": "einen Phishing-Versuch", "malware": "Schadsoftware",
           "impostor": "einen Betrüger, der sich als bekannte Person oder Firma ausgab"},
    "fr": {"phish": "une tentative d'hameçonnage", "malware": "un logiciel malveillant",
           "impostor": "un imposteur se faisant passer pour une personne ou une société connue"},
}
MAX_REASONS = 4


def _line(text: Any, limit: int = 120) -> str:
    return visible(" ".join(str(text or "").split()), limit)


class Notifier:
    """Renders and sends outcome emails for one gateway."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.settings = gateway.settings.reports
        shipped = str(resources.files("mailward.reports").joinpath("templates"))
        loaders = [FileSystemLoader(shipped)]
        if self.settings.templates_dir:
            directory = Path(self.settings.templates_dir)
            if not directory.is_dir():
                from mailward.config import ConfigError

                raise ConfigError(f"reports.templates_dir: {directory} is not a directory")
            loaders.insert(0, FileSystemLoader(str(directory)))
        self.env = Environment(loader=ChoiceLoader(loaders), autoescape=False,
                               undefined=StrictUndefined, keep_trailing_newline=True)

    def language(self, reporter: str) -> str:
        mapping = {k.lower(): v for k, v in self.settings.languages.items()}
        reporter = reporter.lower()
        return mapping.get(reporter) or mapping.get("@" + reporter.rpartition("@")[2]) \
            or self.settings.language

    def render(self, reporter: str, verdict: str, context: dict[str, Any]) -> tuple[str, str]:
        """render - (subject, body) of the outcome email for one reporter."""
        language = self.language(reporter)
        try:
            template = self.env.get_template(f"{language}/{verdict}.txt")
        except TemplateNotFound:
            language = "en"
            template = self.env.get_template(f"en/{verdict}.txt")
        kinds = KINDS.get(language, KINDS["en"])
        values = {"subject": _line(context.get("subject")),
                  "sender": _line(context.get("sender"), 200),
                  "kind": kinds.get(context.get("category", ""), kinds["phish"]),
                  "copies": int(context.get("copies", 1)),
                  "reasons": [_line(r, 200) for r in context.get("reasons", [])][:MAX_REASONS],
                  "reporter": reporter, "verdict": verdict}
        text = template.render(**values)
        head, _, body = text.partition("\n")
        subject = head.removeprefix("Subject:").strip() if head.startswith("Subject:") \
            else "Your report"
        return _line(subject, 200), body.lstrip("\n")

    def sender(self) -> str:
        return self.settings.notify_from or self.settings.address \
            or f"security@{self.gateway.settings.hostname}"

    def message(self, reporter: str, subject: str, body: str) -> bytes:
        message = EmailMessage(policy=SMTP)
        message["From"] = self.sender()
        message["To"] = reporter
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=self.gateway.settings.hostname)
        message["Auto-Submitted"] = "auto-replied"
        message.set_content(body)
        return message.as_bytes()

    async def send(self, reporter: str, verdict: str, context: dict[str, Any]) -> str:
        """send - the outcome email to one reporter; where it went."""
        subject, body = self.render(reporter, verdict, context)
        raw = self.message(reporter, subject, body)
        if self.settings.notify_relay:
            target = RelayTarget.parse(self.settings.notify_relay)
            results = await relay(target, self.sender(), [reporter], raw,
                                  helo=self.gateway.settings.hostname, timeout=60)
            result = results[reporter]
            if not result.ok:
                raise OSError(f"outcome email to {reporter} refused: {result.code} "
                              f"{result.message}")
            return "relay"
        return await self._queue(reporter, raw)

    async def _queue(self, reporter: str, raw: bytes) -> str:
        """_queue - spool the email and record its delivery, as the queue expects."""
        gateway = self.gateway
        queue_id = new_queue_id()
        now = datetime.now(UTC)
        await asyncio.to_thread(gateway.spool.write, queue_id, {
            "queue_id": queue_id, "mail_from": "", "rcpt_to": [reporter],
            "received_at": now.isoformat()}, raw)
        verdict = Verdict(action=Action.DELIVER, score=0.0, reason="report outcome",
                          findings=[], categories={})
        async with gateway.services.store.session() as session:
            session.add(MessageRecord(
                queue_id=queue_id, received_at=now, direction="report", mail_from="",
                header_from=self.sender(), recipients=[reporter],
                subject="Report outcome", size=len(raw), action="deliver",
                verdict=verdict.as_dict(), envelope={"report_outcome": True},
                state="queued"))
            await session.flush()
            session.add(Delivery(queue_id=queue_id, recipient=reporter, status="pending",
                                 attempts=0, next_attempt_at=now, route="inbound"))
            await session.commit()
        if gateway.queue is not None:
            gateway.queue.wake()
        return f"queue {queue_id}"
