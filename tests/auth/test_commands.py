"""The debug commands and `mailward dmarc report`, as an administrator runs them."""

from __future__ import annotations

import asyncio
import gzip
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from mailward.auth.reports import build_report, collect
from mailward.store import Store
from mailward.store.models import DmarcEvaluation

ZONE = {
    "example.com": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; rua=mailto:agg@example.com,"
                                   "mailto:dmarc@reports.example.net,mailto:x@other.example"]},
    "example.com._report._dmarc.reports.example.net": {"TXT": ["v=DMARC1"]},
}


def test_spf_check_prints_the_result_word_first(gateway_factory, dns_server):
    dns_server.set(ZONE)
    gateway = gateway_factory(start=False)
    ns = ["--nameserver", dns_server.address]
    passed = gateway.cli("spf", "check", "--ip", "192.0.2.9", "--mail-from", "a@example.com",
                         "--helo", "mx.example.com", *ns).stdout.decode().splitlines()
    assert passed[0] == "pass"
    failed = gateway.cli("spf", "check", "--ip", "198.51.100.9", "--mail-from",
                         "a@example.com", *ns).stdout.decode().splitlines()
    assert failed[0] == "fail" and "not authorised" in failed[1]


def test_message_commands_with_a_zone_file(gateway_factory, shared, tmp_path):
    dns = json.loads((shared / "cases/C_dkim_dns.json").read_text())["dns"]
    lines = ["$TTL 300"]
    for name, records in dns.items():
        for text in records.get("TXT", []):
            lines.append(f'{name}. IN TXT "{text}"')
    zone = tmp_path / "cases.zone"
    zone.write_text("\n".join(lines) + "\n")
    gateway = gateway_factory(start=False)
    c11 = str(shared / "cases/C11_multiple_from.eml")
    c15 = str(shared / "cases/C15_dkim_l_tag_appended.eml")
    dkim = gateway.cli("dkim", "verify", c15, "--zone", str(zone)).stdout.decode()
    assert dkim.splitlines()[0] == "policy" and "l=39" in dkim
    dmarc = gateway.cli("dmarc", "check", c11, "--zone", str(zone), "--ip", "192.0.2.1",
                        "--mail-from", "billing@example.net").stdout.decode().splitlines()
    assert dmarc[0] == "permerror" and "p=reject of example.com" in dmarc[1]
    dmarc15 = gateway.cli("dmarc", "check", c15, "--zone", str(zone)).stdout.decode()
    assert dmarc15.splitlines()[0] == "fail"
    arc = gateway.cli("arc", "verify", c11, "--zone", str(zone)).stdout.decode()
    assert arc.splitlines()[0] == "none"


def evaluation(**values) -> DmarcEvaluation:
    row = dict(queue_id="q1", evaluated_at=datetime.now(UTC) - timedelta(hours=1),
               source_ip="198.51.100.7", header_from="example.com", envelope_from="example.com",
               policy_domain="example.com", p="reject", sp="", pct=100, adkim="r", aspf="r",
               rua=ZONE["_dmarc.example.com"]["TXT"][0].split("rua=")[1], result="fail",
               disposition="reject", dkim_aligned=False, spf_aligned=False, override="",
               override_comment="", spf_domain="example.com", spf_result="fail",
               dkim_results=[])
    row.update(values)
    return DmarcEvaluation(**row)


async def _store_rows(url: str, rows: list[DmarcEvaluation]) -> None:
    store = Store(url)
    await store.migrate()
    async with store.session() as session:
        session.add_all(rows)
        await session.commit()
    await store.close()


def sample_rows() -> list[DmarcEvaluation]:
    return [evaluation(queue_id=f"q{i}") for i in range(3)] + [
        evaluation(queue_id="q9", source_ip="192.0.2.5", result="pass", disposition="none",
                   spf_aligned=True, spf_result="pass",
                   dkim_results=[{"domain": "example.com", "selector": "s1", "result": "pass"}],
                   dkim_aligned=True),
        evaluation(queue_id="q10", source_ip="203.0.113.9", disposition="none",
                   override="trusted_forwarder", override_comment="arc=pass lists.example.org"),
        evaluation(queue_id="old", evaluated_at=datetime.now(UTC) - timedelta(days=3))]


def test_aggregate_report_rows(database_url):
    from mailward.config import load_settings

    url = load_settings(overrides={"storage.database_url": database_url}).database_url
    asyncio.run(_store_rows(url, sample_rows()))

    async def build():
        store = Store(url)
        try:
            end = datetime.now(UTC)
            grouped = await collect(store, end - timedelta(days=1), end)
            return build_report("example.com", grouped["example.com"], end - timedelta(days=1),
                                end, "mx.test.example", "dmarc@mx.test.example",
                                "mx.test.example")
        finally:
            await store.close()

    report = asyncio.run(build())
    root = ET.fromstring(gzip.decompress(report.gzipped))
    assert root.findtext("policy_published/p") == "reject"
    counts = {r.findtext("row/source_ip"): int(r.findtext("row/count"))
              for r in root.iter("record")}
    assert counts == {"198.51.100.7": 3, "192.0.2.5": 1, "203.0.113.9": 1}
    forwarded = [r for r in root.iter("record") if r.findtext("row/source_ip") == "203.0.113.9"]
    assert forwarded[0].findtext("row/policy_evaluated/reason/type") == "trusted_forwarder"
    assert report.filename.startswith("mx.test.example!example.com!")
    assert report.filename.endswith(".xml.gz")


def test_report_command_writes_and_mails_to_authorised_rua(gateway_factory, smtp_sink,
                                                            dns_server, tmp_path):
    dns_server.set(ZONE)
    gateway = gateway_factory(config={"dns": {"nameservers": [dns_server.address],
                                              "timeout": "1s"}},
                              relay=smtp_sink.url, start=False)
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_store_rows(f"sqlite+aiosqlite:///{gateway.data_dir / 'mailward.db'}",
                            sample_rows()))
    out = tmp_path / "reports"
    printed = gateway.cli("dmarc", "report", "--since", "1d", "--out", str(out),
                          "--send").stdout.decode()
    [written] = list(out.iterdir())
    assert "5 messages in 3 rows" in printed
    [mail] = smtp_sink.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["agg@example.com", "dmarc@reports.example.net"]
    assert b"Report Domain: example.com" in mail.data and written.name.encode() in mail.data
