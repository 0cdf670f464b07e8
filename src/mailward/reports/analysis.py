"""Analysis: re-run a reported message through the whole pipeline, and classify.

The message is judged again from the bytes kept in the spool, by the same
pipeline as new mail, after the intelligence cache is refreshed: so today's
indicators, model and finished sandbox verdicts all count. The verdict of
the pipeline then becomes one of the report verdicts:

- ``malicious``: phishing, malware or impostor findings reach the
  category's thresholds;
- ``spam``: the spam category reaches ``reports.spam_threshold`` (by
  default the scores file's tag threshold);
- ``clean``: neither;
- ``simulation``: the message is one of the organisation's own phishing
  simulations (``reports.simulation_senders`` / ``simulation_urls``),
  whatever the findings say.

Each verdict has a confidence from 0 to 1 (how far past, or short of, the
thresholds the scores are); below ``reports.min_confidence`` the campaign
goes to the analyst queue instead of being acted on.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mailward.envelope import Envelope
from mailward.store.models import MessageRecord, SandboxJob
from mailward.verdict import Action, Category, Verdict

if TYPE_CHECKING:
    from mailward.gateway import Gateway

MALICIOUS = "malicious"
SPAM = "spam"
CLEAN = "clean"
SIMULATION = "simulation"
VERDICTS = (MALICIOUS, SPAM, CLEAN, SIMULATION)
BAD_CATEGORIES = (Category.PHISH, Category.MALWARE, Category.IMPOSTOR)
# Share of the quarantine threshold at which a category starts to count as malicious.
MALICIOUS_FLOOR = 0.4


class AnalysisError(RuntimeError):
    """A reported message could not be analysed (its bytes are gone, or judging failed)."""


@dataclass(slots=True)
class Outcome:
    """A report verdict with its confidence and the findings behind it."""

    verdict: str
    confidence: float
    category: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def _matches_sender(sender: str, patterns: list[str]) -> bool:
    sender = sender.lower()
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern.startswith("@") and sender.endswith(pattern):
            return True
        if pattern == sender:
            return True
    return False


def is_simulation(sender: str, urls: list[str], senders: list[str],
                  url_patterns: list[str]) -> str:
    """is_simulation - why the message is an own phishing simulation, or ''."""
    if sender and _matches_sender(sender, senders):
        return f"sender {sender} is a configured simulation sender"
    for pattern in url_patterns:
        compiled = re.compile(pattern)
        for url in urls:
            if compiled.search(url[:4096]):
                return f"URL {url[:200]} matches the simulation pattern {pattern}"
    return ""


def classify(verdict: Verdict, gateway: "Gateway") -> Outcome:
    """classify - the report verdict and its confidence from a pipeline verdict."""
    assert gateway.pipeline is not None
    scores = gateway.pipeline.policy.scores
    quarantine_total = scores.totals.get(Action.QUARANTINE, 15.0)
    tag_total = scores.totals.get(Action.TAG, 6.0)
    strength, worst = 0.0, ""
    for category in BAD_CATEGORIES:
        thresholds = scores.category_thresholds.get(category, {})
        limit = thresholds.get(Action.QUARANTINE) or thresholds.get(Action.TAG) \
            or quarantine_total
        ratio = max(0.0, verdict.categories.get(str(category), 0.0)) / limit
        if ratio > strength:
            strength, worst = ratio, str(category)
    spam_limit = gateway.settings.reports.spam_threshold or tag_total
    spam_ratio = max(0.0, verdict.categories.get(str(Category.SPAM), 0.0)) / spam_limit
    forced = verdict.action.rank >= Action.QUARANTINE.rank and \
        verdict.category in BAD_CATEGORIES
    evidence = {"score": round(verdict.score, 3), "action": str(verdict.action),
                "categories": {k: round(v, 3) for k, v in verdict.categories.items()},
                "findings": [f.as_dict() for f in verdict.findings if f.score != 0][:40]}
    if forced or strength >= 1.0:
        return Outcome(MALICIOUS, min(1.0, 0.6 + 0.4 * min(strength, 1.0)) if not forced
                       else 1.0, str(verdict.category or worst), evidence)
    if strength >= MALICIOUS_FLOOR and strength >= spam_ratio:
        return Outcome(MALICIOUS, round(strength, 3), worst, evidence)
    if spam_ratio >= 1.0:
        return Outcome(SPAM, round(min(1.0, 0.6 + 0.4 * min(spam_ratio - 1.0, 1.0)), 3),
                       str(Category.SPAM), evidence)
    if spam_ratio >= 0.5:
        return Outcome(SPAM, round(0.6 * spam_ratio, 3), str(Category.SPAM), evidence)
    doubt = max(strength / MALICIOUS_FLOOR * 0.4, spam_ratio)
    return Outcome(CLEAN, round(max(0.0, 1.0 - doubt), 3), "", evidence)


async def _sandbox_findings(gateway: "Gateway", queue_id: str) -> list:
    from mailward.attachments.sandbox.service import job_finding

    async with gateway.services.store.session() as session:
        jobs = (await session.scalars(select(SandboxJob).where(
            SandboxJob.queue_id == queue_id, SandboxJob.status == "done"))).all()
    return [job_finding(job) for job in jobs]


async def reanalyse(gateway: "Gateway", queue_id: str) -> tuple[Outcome, list[str]]:
    """reanalyse - judge a delivered message again; its outcome and its URLs."""
    async with gateway.services.store.session() as session:
        record = await session.scalar(select(MessageRecord).where(
            MessageRecord.queue_id == queue_id))
    if record is None:
        raise AnalysisError(f"no record of message {queue_id}")
    raw = await asyncio.to_thread(gateway.spool.message_bytes, queue_id)
    if raw is None:
        raise AnalysisError(f"the bytes of message {queue_id} are no longer kept")
    await gateway.services.intel_cache.refresh(force=True)
    envelope = Envelope.from_dict(record.envelope) if record.envelope.get("queue_id") \
        else Envelope(queue_id=queue_id, mail_from=record.mail_from,
                      rcpt_to=list(record.recipients), received_at=record.received_at)
    # TODO: Session-stage findings (SPF at MAIL, connection reputation) are not re-run
    # here, so a report re-judges content, URLs, files and DKIM/DMARC only; a sender
    # that only SPF would now refuse is not caught again.
    message, verdict, _ = await gateway.judge(envelope, raw,
                                              await _sandbox_findings(gateway, queue_id))
    settings = gateway.settings.reports
    urls = [found.url for found in message.urls]
    sender = message.from_addresses[0].address if message.from_addresses else record.mail_from
    why = is_simulation(sender, urls, settings.simulation_senders, settings.simulation_urls)
    outcome = classify(verdict, gateway)
    if why:
        outcome = Outcome(SIMULATION, 1.0, "", {**outcome.evidence, "simulation": why})
    outcome.evidence["queue_id"] = queue_id
    return outcome, urls
