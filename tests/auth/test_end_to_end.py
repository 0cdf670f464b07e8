"""Sender authentication end to end: a real `mailward serve`, real SMTP and real DNS.

The gateway trusts the loopback test client as a proxy (XCLIENT), so each
message is judged as coming from the address the test names.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailward.auth.arc import ArcSealer, ArcVerifier
from mailward.auth.dns import Resolver
from mailward.config import DnsSettings


def keypair() -> tuple[bytes, str]:
    """keypair - a PEM private key and its DKIM key record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


@pytest.fixture
def world(shared, dns_server, tmp_path):
    """world - the case zone plus a mailing list that seals with ARC, and our own key."""
    zone = json.loads((shared / "cases/C_dkim_dns.json").read_text())["dns"]
    list_key, list_record = keypair()
    our_key, our_record = keypair()
    zone.update({
        "arc._domainkey.lists.example.org": {"TXT": [list_record]},
        "seal._domainkey.mx.test.example": {"TXT": [our_record]},
        "lists.example.org": {"TXT": ["v=spf1 ip4:203.0.113.9 -all"]},
    })
    dns_server.set(zone)
    key_file = tmp_path / "arc.pem"
    key_file.write_bytes(our_key)
    return {"dns": dns_server, "list_key": list_key, "our_key_file": str(key_file)}


def start(gateway_factory, smtp_sink, world, **extra):
    config = {
        "dns": {"nameservers": [world["dns"].address], "timeout": "1s"},
        "smtp": {"xclient_networks": ["127.0.0.1/32"], "bare_lf": "normalize"},
        "auth": {"authserv_id": "mx.test.example"},
        "arc": {"trusted_sealers": ["lists.example.org"], "key_file": world["our_key_file"],
                "selector": "seal", "domain": "mx.test.example"},
    }
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return gateway_factory(config=config, relay=smtp_sink.url)


def send_as(gateway, ip: str, helo: str, mail_from: str, raw: bytes) -> tuple[int, bytes]:
    """send_as - one message through XCLIENT; the reply to DATA."""
    with gateway.smtp() as client:
        code, text = client.docmd("XCLIENT", f"ADDR={ip} HELO={helo}")
        assert code == 220, text
        client.ehlo_resp = None
        client.ehlo(helo)
        assert client.mail(mail_from)[0] == 250
        assert client.rcpt("user@example.com")[0] == 250
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error


MESSAGE = (b"From: Jordan Blake <ceo@example.com>\r\nTo: user@example.com\r\n"
           b"Subject: wire transfer\r\nDate: Thu, 03 Dec 2026 09:00:00 +0000\r\n"
           b"Message-ID: <e2e1@example.com>\r\n\r\nPlease pay today.\r\n")


def own_results(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode().replace("\r\n ", " ").replace("\r\n\t", " ")
    return [line for line in head.split("\r\n")
            if line.lower().startswith("authentication-results:")
            and line.split(":", 1)[1].strip().lower().startswith("mx.test.example")]


def test_p_reject_from_an_unauthorised_ip_gets_550(gateway_factory, smtp_sink, world):
    gateway = start(gateway_factory, smtp_sink, world)
    code, text = send_as(gateway, "198.51.100.7", "mail.example.net", "ceo@example.com",
                         MESSAGE)
    assert code == 550 and b"5.7.1" in text, text
    assert b"DMARC_POLICY_REJECT" in text
    assert smtp_sink.messages == []


def test_authorised_ip_passes_with_exactly_one_of_our_results(gateway_factory, smtp_sink,
                                                              world):
    gateway = start(gateway_factory, smtp_sink, world)
    forged = MESSAGE.replace(b"Subject:", b"Authentication-Results: mx.test.example; "
                             b"dkim=pass header.d=example.com;\n dmarc=pass\r\nSubject:")
    code, text = send_as(gateway, "192.0.2.25", "mail.example.com", "ceo@example.com", forged)
    assert code == 250, text
    [received] = smtp_sink.wait_for(1)
    [ours] = own_results(received.data)
    assert "spf=pass" in ours and "dmarc=pass" in ours and "dkim=none" in ours
    assert b"dmarc=pass\r\nSubject" not in received.data


def forwarded(world, domain: bytes = b"example.com") -> bytes:
    """forwarded - the message as a mailing list re-sent it, sealed with ARC."""
    seen = (b"Authentication-Results: lists.example.org; arc=none;\r\n spf=pass "
            b"smtp.mailfrom=" + domain + b";\r\n dmarc=pass header.from=" + domain + b"\r\n")
    body = MESSAGE.replace(b"Subject: wire", b"List-Id: <staff.lists.example.org>\r\n"
                           b"Subject: [staff] wire").replace(b"@example.com>", b"@" + domain + b">")
    sealer = ArcSealer(world["list_key"], "arc", "lists.example.org", "lists.example.org",
                       mode="always", headers=["from", "to", "subject", "date", "message-id"])
    return sealer.seal(seen + body)


def test_trusted_arc_seal_overrides_the_failure(gateway_factory, smtp_sink, world):
    gateway = start(gateway_factory, smtp_sink, world)
    code, text = send_as(gateway, "203.0.113.9", "lists.example.org",
                         "staff-bounces@lists.example.org", forwarded(world))
    assert code == 250, text
    [received] = smtp_sink.wait_for(1)
    [ours] = own_results(received.data)
    assert "arc=pass" in ours and "dmarc=fail" in ours and "trusted_forwarder" in ours
    database = sqlite3.connect(gateway.data_dir / "mailward.db")
    rows = database.execute("select policy_domain, disposition, override, override_comment "
                            "from dmarc_evaluations").fetchall()
    assert rows == [("example.com", "none", "trusted_forwarder", rows[0][3])]
    assert "lists.example.org" in rows[0][3]


def test_an_untrusted_sealer_does_not_override(gateway_factory, smtp_sink, world):
    gateway = start(gateway_factory, smtp_sink, world, arc={"trusted_sealers": []})
    code, _ = send_as(gateway, "203.0.113.9", "lists.example.org",
                      "staff-bounces@lists.example.org", forwarded(world))
    assert code == 550


def test_a_tagged_message_gets_our_arc_set(gateway_factory, smtp_sink, world):
    import asyncio

    gateway = start(gateway_factory, smtp_sink, world,
                    policy={"tag_external": True}, smtp={"accepted_domains": ["example.com"]})
    code, text = send_as(gateway, "203.0.113.9", "lists.example.org",
                         "staff-bounces@lists.example.org",
                         forwarded(world, b"example.net"))
    assert code == 250, text
    [received] = smtp_sink.wait_for(1)
    assert b"CAUTION" in received.data
    assert received.data.startswith(b"ARC-Seal: i=2;")
    resolver = Resolver(DnsSettings(nameservers=[world["dns"].address], timeout=1.0))
    result = asyncio.run(ArcVerifier(resolver).verify(received.data))
    assert result.cv == "pass", result.reason
    assert [s.seal_domain for s in result.sets] == ["lists.example.org", "mx.test.example"]


def test_several_from_headers_get_the_strictest_policy_case_c11(gateway_factory, smtp_sink,
                                                                world, shared):
    gateway = start(gateway_factory, smtp_sink, world)
    raw = (shared / "cases/C11_multiple_from.eml").read_bytes()
    code, text = send_as(gateway, "198.51.100.20", "mail.example.net", "billing@example.net",
                         raw)
    assert code == 550, text


def test_a_smuggled_result_behind_a_bare_lf_is_removed_case_c03(gateway_factory, smtp_sink,
                                                                 world, shared):
    gateway = start(gateway_factory, smtp_sink, world,
                    auth={"authserv_id": "mx.example.com"})
    raw = (shared / "cases/C03_bare_lf_header_split.eml").read_bytes()
    code, text = send_as(gateway, "198.51.100.20", "mail.example.org", "dana.reyes@example.org",
                         raw)
    assert code == 250, text
    [received] = smtp_sink.wait_for(1)
    head = received.data.split(b"\r\n\r\n", 1)[0]
    results = [line for line in head.split(b"\r\n") if line.lower().startswith(
        b"authentication-results: mx.example.com")]
    assert len(results) == 1 and b"dkim=pass header.d=example.com" not in head


def test_xclient_is_refused_to_untrusted_clients(gateway_factory):
    gateway = gateway_factory()
    with gateway.smtp() as client:
        assert b"XCLIENT" not in (client.ehlo_resp or b"")
        code, text = client.docmd("XCLIENT", "ADDR=192.0.2.1")
        assert code == 550 and b"5.7.0" in text


def test_xclient_syntax_errors_and_transactions(gateway_factory, world, smtp_sink):
    gateway = start(gateway_factory, smtp_sink, world)
    with gateway.smtp() as client:
        assert b"XCLIENT ADDR" in client.ehlo_resp
        assert client.docmd("XCLIENT", "ADDR=not-an-ip")[0] == 501
        assert client.docmd("XCLIENT", "SECRET=1")[0] == 501
        client.mail("a@example.org")
        assert client.docmd("XCLIENT", "ADDR=192.0.2.1")[0] == 503


def test_an_unreadable_arc_key_stops_the_server(tmp_path):
    from tests.support.gateway import RunningGateway

    gateway = RunningGateway(tmp_path, {"arc": {"key_file": str(tmp_path / "none.pem"),
                                                "selector": "s", "domain": "example.com"}})
    with pytest.raises(RuntimeError) as failed:
        gateway.start(timeout=30)
    assert "arc.key_file" in str(failed.value)
