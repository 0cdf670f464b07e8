"""Policy from an incident: block the sender, make a campaign rule, in one action.

A block is an indicator of type ``sender`` or ``sender_domain`` with an
expiry (``trap.block_expiry`` by default), source ``incident:N``: it is
enforced inbound by ``CampaignCheck`` and, being a change of the store,
retro-scanned like any other. A campaign rule is the incident's
fingerprint: the sending IPs and sender domains, URL patterns (host and
first path segment), attachment hashes and the TLSH fuzzy hashes of the
bodies. A message is a look-alike when it carries one of the hashes, when
its body's TLSH is within ``trap.campaign_tlsh_distance`` of one of the
rule's, or when a URL pattern matches and it comes from the same
infrastructure. A new rule is retro-scanned against what was delivered.

TLSH needs at least 50 bytes of varied text; a shorter body has no fuzzy
hash and is matched by the other parts only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import tlsh
from sqlalchemy import or_, select

from mailward.intel.store import NewIndicator
from mailward.pipeline import Stage, Task
from mailward.store.models import (CampaignRule, Copy, Incident, IncidentCopy, MessageFile,
                                   MessageFingerprint, MessageRecord, MessageUrl)
from mailward.trap.lookup import CopyHit, Indicator
from mailward.verdict import Category, Finding

if TYPE_CHECKING:
    from mailward.config import Settings
    from mailward.message import Message
    from mailward.services import Services
    from mailward.store import Store

log = logging.getLogger("mailward.trap")

MAX_TEXT = 1024 * 1024
MAX_PARTS = 200


def body_tlsh(text: str) -> str:
    """body_tlsh - the TLSH of a message's visible text, or "" when too short."""
    data = " ".join(text.split()).encode("utf-8", "replace")[:MAX_TEXT]
    if len(data) < 50:
        return ""
    digest = tlsh.hash(data)
    return "" if digest in ("", "TNULL") else digest


def index_row(session, queue_id: str, message: "Message") -> None:
    """index_row - the fingerprint row of an accepted message (beside its URLs and files)."""
    try:
        digest = body_tlsh(message.text)
    except Exception as error:  # hostile text must never stop indexing
        log.warning("%s: no body fingerprint: %s", queue_id, error)
        return
    if digest:
        session.add(MessageFingerprint(queue_id=queue_id, tlsh=digest))


def url_pattern(url: str) -> str:
    """url_pattern - host and first path segment: what a campaign's links share."""
    parts = urlsplit(url)
    segment = parts.path.strip("/").split("/", 1)[0]
    return f"{(parts.hostname or '').lower()}/{segment}"


@dataclass
class Fingerprint:
    ips: list[str]
    sender_domains: list[str]
    url_patterns: list[str]
    sha256: list[str]
    tlsh: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"ips": self.ips, "sender_domains": self.sender_domains,
                "url_patterns": self.url_patterns, "sha256": self.sha256, "tlsh": self.tlsh}

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Fingerprint":
        return cls(*(list(data.get(k, []))[:MAX_PARTS] for k in
                     ("ips", "sender_domains", "url_patterns", "sha256", "tlsh")))

    def matches(self, ip: str, sender_domain: str, urls: Iterable[str],
                hashes: Iterable[str], digest: str, distance: int) -> str:
        """matches - why a message is a look-alike, or ""."""
        if set(hashes) & set(self.sha256):
            return "attachment hash"
        if digest:
            for known in self.tlsh:
                try:
                    if tlsh.diff(digest, known) <= distance:
                        return "fuzzy body hash"
                except ValueError:
                    continue
        same_infra = ip in self.ips or sender_domain in self.sender_domains
        if same_infra and {url_pattern(u) for u in urls} & set(self.url_patterns):
            return "URL pattern from the same infrastructure"
        return ""


async def fingerprint_of(session, incident_id: int) -> Fingerprint:
    queue_ids = sorted(set((await session.scalars(
        select(Copy.queue_id).join(IncidentCopy, IncidentCopy.copy_id == Copy.id)
        .where(IncidentCopy.incident_id == incident_id))).all()))[:MAX_PARTS]
    if not queue_ids:
        return Fingerprint([], [], [], [], [])
    ips = (await session.scalars(select(MessageRecord.peer_ip).where(
        MessageRecord.queue_id.in_(queue_ids)))).all()
    domains = (await session.scalars(select(Copy.sender_domain).where(
        Copy.queue_id.in_(queue_ids)))).all()
    urls = (await session.scalars(select(MessageUrl.url).where(
        MessageUrl.queue_id.in_(queue_ids)))).all()
    hashes = (await session.scalars(select(MessageFile.sha256).where(
        MessageFile.queue_id.in_(queue_ids)))).all()
    digests = (await session.scalars(select(MessageFingerprint.tlsh).where(
        MessageFingerprint.queue_id.in_(queue_ids)))).all()

    def top(values: Iterable[str]) -> list[str]:
        return sorted({v for v in values if v})[:MAX_PARTS]

    return Fingerprint(top(ips), top(domains), top(url_pattern(u) for u in urls),
                       top(hashes), top(digests))


async def block_sender(settings: "Settings", store: "Store", incident_id: int,
                       what: str = "domain", expires: float | None = None,
                       actor: str = "") -> list[str]:
    """block_sender - block the incident's sender addresses or domains until expiry."""
    from mailward.trap.intake import add_checked

    async with store.session() as session:
        incident = await session.get(Incident, incident_id)
        if incident is None:
            raise ValueError(f"no incident {incident_id}")
        senders = sorted(set((await session.scalars(
            select(Copy.sender).join(IncidentCopy, IncidentCopy.copy_id == Copy.id)
            .where(IncidentCopy.incident_id == incident_id))).all()))
    kind = "sender" if what == "sender" else "sender_domain"
    values = sorted({s if kind == "sender" else s.rpartition("@")[2] for s in senders if s})
    until = datetime.now(UTC) + timedelta(seconds=expires or settings.trap.block_expiry)
    items = [NewIndicator(kind, v, f"incident:{incident_id}", incident.category, 100, until,
                          f"blocked from incident {incident_id}") for v in values]
    report = await add_checked(settings, store, items, actor=actor)
    if report.refused:
        raise ValueError("; ".join(f"{k}: {r}" for k, r in report.refused))
    return [f"{kind}:{v}" for v in values]


async def campaign_rule(settings: "Settings", store: "Store", incident_id: int,
                        expires: float | None = None, actor: str = "") -> CampaignRule:
    """campaign_rule - store the incident's fingerprint as an inbound rule."""
    async with store.session() as session:
        incident = await session.get(Incident, incident_id)
        if incident is None:
            raise ValueError(f"no incident {incident_id}")
        fingerprint = await fingerprint_of(session, incident_id)
        now = datetime.now(UTC)
        rule = CampaignRule(incident_id=incident_id, name=f"campaign of incident {incident_id}",
                            fingerprint=fingerprint.as_dict(), category=incident.category,
                            created_at=now,
                            expires_at=now + timedelta(
                                seconds=expires or settings.trap.block_expiry),
                            created_by=actor[:200])
        session.add(rule)
        await session.commit()
    return rule


async def scan_rule(settings: "Settings", store: "Store", rule: CampaignRule,
                    now: datetime | None = None) -> list[CopyHit]:
    """scan_rule - the delivered copies in the look-back that look like the campaign."""
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=settings.trap.lookback)
    fingerprint = Fingerprint.of(rule.fingerprint)
    hits: list[CopyHit] = []
    async with store.session() as session:
        # Candidates: copies sharing any cheap, indexed part of the fingerprint.
        candidates = set()
        for column, values in ((MessageRecord.peer_ip, fingerprint.ips),):
            if values:
                candidates |= set((await session.scalars(select(MessageRecord.queue_id).where(
                    column.in_(values), MessageRecord.received_at >= since))).all())
        if fingerprint.sender_domains:
            candidates |= set((await session.scalars(select(Copy.queue_id).where(
                Copy.sender_domain.in_(fingerprint.sender_domains),
                Copy.delivered_at >= since))).all())
        if fingerprint.sha256:
            candidates |= set((await session.scalars(select(MessageFile.queue_id).where(
                MessageFile.sha256.in_(fingerprint.sha256)))).all())
        if fingerprint.tlsh:
            # TODO: fuzzy candidates are every fingerprinted message in the window; past a few hundred thousand messages this needs a TLSH bucket index or it slows the rule scan down.
            candidates |= set((await session.scalars(
                select(MessageFingerprint.queue_id).join(
                    Copy, Copy.queue_id == MessageFingerprint.queue_id)
                .where(Copy.delivered_at >= since))).all())
        for queue_id in sorted(candidates):
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == queue_id))
            if record is None:
                continue
            urls = (await session.scalars(select(MessageUrl.url).where(
                MessageUrl.queue_id == queue_id))).all()
            hashes = (await session.scalars(select(MessageFile.sha256).where(
                MessageFile.queue_id == queue_id))).all()
            digest = await session.scalar(select(MessageFingerprint.tlsh).where(
                MessageFingerprint.queue_id == queue_id)) or ""
            sender = (record.header_from or record.mail_from).lower()
            why = fingerprint.matches(record.peer_ip, sender.rpartition("@")[2], urls,
                                      hashes, digest, settings.trap.campaign_tlsh_distance)
            if not why:
                continue
            for copy in (await session.scalars(select(Copy).where(
                    Copy.queue_id == queue_id, Copy.delivered_at >= since))).all():
                hits.append(CopyHit(copy.id, copy.queue_id, copy.recipient, copy.state,
                                    f"campaign: {why}"[:64]))
    return hits


async def apply_rule(scanner, rule: CampaignRule) -> dict[str, Any]:
    """apply_rule - retro-scan a campaign rule: incident, pulls, alert, like an indicator."""
    from mailward.trap.retroscan import ScanReport

    hits = await scan_rule(scanner.settings, scanner.store, rule)
    indicator = Indicator("campaign", f"rule {rule.id}", rule.category,
                          f"incident:{rule.incident_id}")
    report = ScanReport(indicators=1)
    if hits:
        await scanner.handle([(indicator, hits)], report)
    return {"rule": rule.id, "matched": len(hits), "pulled": report.pulled,
            "incidents": report.incidents}


class CampaignCheck:
    """Inbound: senders blocked from incidents, and look-alikes of known campaigns."""

    name: ClassVar[str] = "campaign"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "INTEL_SENDER_BLOCKED": "the sender address or domain is in the threat intelligence",
        "CAMPAIGN_RULE_MATCH": "the message looks like a campaign an incident found",
    }

    def __init__(self, services: "Services") -> None:
        self.services = services
        self._rules: list[tuple[CampaignRule, Fingerprint]] = []
        self._loaded = 0.0

    @classmethod
    def from_services(cls, services: "Services") -> "CampaignCheck":
        return cls(services)

    async def _active_rules(self) -> list[tuple[CampaignRule, Fingerprint]]:
        import time

        if time.monotonic() - self._loaded > 5.0:
            now = datetime.now(UTC)
            async with self.services.store.session() as session:
                rules = (await session.scalars(select(CampaignRule).where(
                    or_(CampaignRule.expires_at.is_(None), CampaignRule.expires_at > now))
                    .order_by(CampaignRule.id.desc()).limit(1000))).all()
            self._rules = [(rule, Fingerprint.of(rule.fingerprint)) for rule in rules]
            self._loaded = time.monotonic()
        return self._rules

    async def check(self, task: Task) -> list[Finding]:
        message = task.message
        findings = []
        cache = self.services.intel_cache
        await cache.refresh()
        sender = (message.from_addresses[0].address if message and message.from_addresses
                  else task.envelope.mail_from) or ""
        for address in {sender.lower(), task.envelope.mail_from.lower()} - {""}:
            hit = cache.sender(address)
            if hit is not None:
                findings.append(Finding("INTEL_SENDER_BLOCKED", Category(hit.category),
                                        f"{address} matches {hit.kind} {hit.value} "
                                        f"({hit.source})"))
                break
        if message is None:
            return findings
        rules = await self._active_rules()
        if not rules:
            return findings
        digest = body_tlsh(message.text)
        urls = [u.url for u in message.urls]
        hashes = [node.sha256 for node in message.files if node.data]
        domain = sender.rpartition("@")[2].lower()
        for rule, fingerprint in rules:
            why = fingerprint.matches(task.envelope.peer_ip, domain, urls, hashes, digest,
                                      self.services.settings.trap.campaign_tlsh_distance)
            if why:
                findings.append(Finding("CAMPAIGN_RULE_MATCH", Category(rule.category),
                                        f"{rule.name}: {why}"))
                break
        return findings
