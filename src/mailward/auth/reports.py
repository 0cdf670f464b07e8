"""DMARC aggregate reports (RFC 7489 7.2, Appendix C): XML, gzip, mail to rua.

Every DMARC evaluation is stored as it happens; a report for a period
groups them per policy domain and per identical row (source IP,
disposition, alignment, identifiers, authentication results), names the
file as RFC 7489 7.2.1.1 asks, and can mail it to the domain's ``rua``
mailto: addresses through the configured relay.

SECURITY: a rua address outside the policy domain receives reports only
when its domain agrees to, by publishing
``<policy-domain>._report._dmarc.<rua-domain>`` (RFC 7489 7.1), so a
domain cannot make us send our mail data to a third party.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import select

from mailward.auth.dns import DnsError, Resolver
from mailward.store.models import DmarcEvaluation

log = logging.getLogger("mailward.auth")


@dataclass(frozen=True, slots=True)
class AggregateReport:
    """One report: for one policy domain and period, ready to write or mail."""

    policy_domain: str
    filename: str
    report_id: str
    xml: bytes
    rua: tuple[str, ...]
    rows: int
    messages: int

    @property
    def gzipped(self) -> bytes:
        return gzip.compress(self.xml, mtime=0)


def _row_key(row: DmarcEvaluation) -> tuple:
    dkim = tuple(sorted((d.get("domain", ""), d.get("selector", ""), d.get("result", ""))
                        for d in row.dkim_results or []))
    return (row.source_ip, row.disposition, row.dkim_aligned, row.spf_aligned,
            row.header_from, row.envelope_from, row.spf_domain, row.spf_result, dkim,
            row.override, row.override_comment)


def _sub(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = str(text)
    return element


def _dkim_word(result: str) -> str:
    """_dkim_word - RFC 7489 Appendix C DKIMResultType (policy counts as a fail)."""
    return result if result in ("none", "pass", "fail", "neutral", "temperror",
                                "permerror") else "fail"


def build_report(domain: str, rows: list[DmarcEvaluation], begin: datetime, end: datetime,
                 org_name: str, email: str, receiver: str) -> AggregateReport:
    """build_report - the aggregate report XML of one policy domain (RFC 7489 Appendix C)."""
    start, stop = int(begin.timestamp()), int(end.timestamp())
    report_id = hashlib.sha256(f"{receiver}!{domain}!{start}!{stop}".encode()).hexdigest()[:24]
    latest = max(rows, key=lambda r: r.evaluated_at)
    root = ET.Element("feedback")
    _sub(root, "version", "1.0")
    meta = _sub(root, "report_metadata")
    _sub(meta, "org_name", org_name)
    _sub(meta, "email", email)
    _sub(meta, "report_id", report_id)
    dates = _sub(meta, "date_range")
    _sub(dates, "begin", start)
    _sub(dates, "end", stop)
    published = _sub(root, "policy_published")
    _sub(published, "domain", domain)
    _sub(published, "adkim", latest.adkim)
    _sub(published, "aspf", latest.aspf)
    _sub(published, "p", latest.p)
    _sub(published, "sp", latest.sp or latest.p)
    _sub(published, "pct", latest.pct)
    counts = Counter(_row_key(row) for row in rows)
    for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0])):
        _record(root, key, count)
    ET.indent(root)
    xml = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")
    rua = tuple(uri.strip() for uri in latest.rua.split(",") if uri.strip())
    return AggregateReport(domain, f"{receiver}!{domain}!{start}!{stop}.xml.gz", report_id,
                           xml, rua, len(counts), len(rows))


def _record(root: ET.Element, key: tuple, count: int) -> None:
    """_record - one <record>: row, identifiers, auth_results."""
    (ip, disposition, dkim_ok, spf_ok, header_from, envelope_from, spf_domain, spf_result,
     dkim, override, comment) = key
    record = _sub(root, "record")
    row = _sub(record, "row")
    _sub(row, "source_ip", ip)
    _sub(row, "count", count)
    evaluated = _sub(row, "policy_evaluated")
    _sub(evaluated, "disposition", disposition)
    _sub(evaluated, "dkim", "pass" if dkim_ok else "fail")
    _sub(evaluated, "spf", "pass" if spf_ok else "fail")
    if override:
        reason = _sub(evaluated, "reason")
        _sub(reason, "type", override)
        if comment:
            _sub(reason, "comment", comment)
    identifiers = _sub(record, "identifiers")
    if envelope_from:
        _sub(identifiers, "envelope_from", envelope_from)
    _sub(identifiers, "header_from", header_from)
    results = _sub(record, "auth_results")
    for domain, selector, result in dkim:
        entry = _sub(results, "dkim")
        _sub(entry, "domain", domain)
        if selector:
            _sub(entry, "selector", selector)
        _sub(entry, "result", _dkim_word(result))
    spf = _sub(results, "spf")
    _sub(spf, "domain", spf_domain or envelope_from or header_from)
    _sub(spf, "scope", "mfrom")
    _sub(spf, "result", spf_result if spf_result != "none" or spf_domain else "none")


async def collect(store, begin: datetime, end: datetime) -> dict[str, list[DmarcEvaluation]]:
    """collect - the stored evaluations of a period, by policy domain."""
    query = (select(DmarcEvaluation).where(DmarcEvaluation.evaluated_at >= begin)
             .where(DmarcEvaluation.evaluated_at < end).order_by(DmarcEvaluation.id))
    grouped: dict[str, list[DmarcEvaluation]] = {}
    async with store.session() as session:
        for row in (await session.execute(query)).scalars():
            grouped.setdefault(row.policy_domain.lower(), []).append(row)
    return grouped


def mailto_addresses(rua: tuple[str, ...]) -> list[str]:
    """mailto_addresses - the addresses of mailto: URIs, size limits dropped (RFC 7489 6.2)."""
    found = []
    for uri in rua:
        if not uri.lower().startswith("mailto:"):
            continue
        address = uri[7:].split("!", 1)[0].split("?", 1)[0].strip()
        if "@" in address and " " not in address:
            found.append(address)
    return found


async def authorised(resolver: Resolver, policy_domain: str, address: str,
                     org_domain) -> bool:
    """authorised - may reports for this domain go to this address (RFC 7489 7.1)?"""
    target = address.rpartition("@")[2].lower()
    if org_domain(target) == org_domain(policy_domain):
        return True
    try:
        texts = await resolver.txt(f"{policy_domain}._report._dmarc.{target}")
    except DnsError:
        return False
    return any(text.strip().lower().startswith("v=dmarc1") for text in texts)


def report_mail(report: AggregateReport, sender: str, recipients: list[str],
                receiver: str) -> bytes:
    """report_mail - the message carrying one report (RFC 7489 7.2.1.1)."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = (f"Report Domain: {report.policy_domain} Submitter: {receiver} "
                       f"Report-ID: <{report.report_id}>")
    mail["Date"] = format_datetime(datetime.now().astimezone())
    mail["Message-ID"] = make_msgid(domain=receiver)
    mail.set_content(f"DMARC aggregate report for {report.policy_domain} from {receiver}.\n")
    mail.add_attachment(report.gzipped, maintype="application", subtype="gzip",
                        filename=report.filename)
    return mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))
