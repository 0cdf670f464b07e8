"""The authentication checks inside the real pipeline (Gateway.judge), over real DNS."""

from __future__ import annotations

import asyncio
import json

import pytest

from mailward.config import load_settings
from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.pipeline import Stage, Task
from mailward.verdict import Verdict


def judge(tmp_path, dns_server, raw: bytes, ip: str, mail_from: str, helo: str,
          **overrides):
    settings = load_settings(overrides={
        "storage.data_dir": str(tmp_path / "data"), "dns.nameservers": [dns_server.address],
        "dns.timeout": "1s", "auth.authserv_id": "mx.test.example", **overrides})

    async def body():
        gateway = Gateway(settings)
        await gateway.start()
        try:
            envelope = Envelope(queue_id=new_queue_id(), mail_from=mail_from, peer_ip=ip,
                                helo=helo, rcpt_to=["sam.okafor@example.com"])
            task = Task(envelope=envelope, services=gateway.services)
            found = await gateway.pipeline.run_stage(Stage.MAIL, task)
            return await gateway.judge(envelope, raw, found)
        finally:
            await gateway.close()

    return asyncio.run(body())


@pytest.fixture
def case_dns(shared, dns_server):
    dns_server.set(json.loads((shared / "cases/C_dkim_dns.json").read_text())["dns"])
    return dns_server


def symbols(verdict: Verdict) -> set[str]:
    return {f.symbol for f in verdict.findings}


def test_malformed_from_never_passes_dmarc_case_c08(tmp_path, case_dns, shared):
    raw = (shared / "cases/C08_parseaddr_specials.eml").read_bytes()
    _, verdict, _ = judge(tmp_path, case_dns, raw, "192.0.2.10", "alice@example.com",
                          "mx.example.com")
    assert "DMARC_BAD_FROM" in symbols(verdict) and "DMARC_PASS" not in symbols(verdict)
    [(name, value)] = verdict.headers
    assert name == "Authentication-Results" and "dmarc=permerror" in value


def test_l_tag_tail_is_unauthenticated_but_scanned_case_c15(tmp_path, case_dns, shared):
    raw = (shared / "cases/C15_dkim_l_tag_appended.eml").read_bytes()
    message, verdict, _ = judge(tmp_path, case_dns, raw, "198.51.100.20",
                                "billing@example.net", "mx.example.net",
                                **{"spf.enabled": False})
    found = symbols(verdict)
    assert "DKIM_PARTIAL" in found and "DKIM_PASS" not in found
    assert "DMARC_PASS" not in found and "DMARC_POLICY_NONE" in found
    assert any(u.url == "https://evil.example.net/mailbox" for u in message.urls)
    [(_, value)] = verdict.headers
    assert "dkim=policy" in value and "dmarc=fail" in value


def test_results_survive_the_stored_verdict(tmp_path, case_dns, shared):
    raw = (shared / "cases/C11_multiple_from.eml").read_bytes()
    _, verdict, _ = judge(tmp_path, case_dns, raw, "198.51.100.20", "billing@example.net",
                          "mx.example.net")
    assert "DMARC_POLICY_REJECT" in symbols(verdict) and verdict.action == "reject"
    again = Verdict.from_dict(verdict.as_dict())
    assert again.headers == verdict.headers and len(again.headers) == 1
    assert "dkim=fail" in again.headers[0][1] and "spf=pass" in again.headers[0][1]


def test_internal_relays_are_not_authenticated(tmp_path, case_dns, shared):
    raw = (shared / "cases/C11_multiple_from.eml").read_bytes()
    _, verdict, _ = judge(tmp_path, case_dns, raw, "127.0.0.1", "billing@example.net",
                          "localhost")
    assert not any(s.startswith(("SPF_", "DKIM_", "DMARC_", "ARC_")) for s in symbols(verdict))
    assert verdict.headers == [("Authentication-Results", "mx.test.example; none")]
