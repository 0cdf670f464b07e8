"""Tagged mail whose part names a charset Python cannot write still gets its banner."""

from __future__ import annotations

import pytest

from tests.reports.support import scores_file

ODD_CHARSETS = [b'"a\x00b"', b'"undefined"', b'"idna"', b'"base64"', b'"no-such-charset"']


@pytest.mark.parametrize("charset", ODD_CHARSETS)
def test_tagged_mail_with_an_odd_charset_is_delivered_with_its_banner(
        gateway_factory, smtp_sink, tmp_path, charset):
    scores = scores_file(tmp_path / "scores.toml", tag=-1000.0, quarantine=2000.0)
    gateway = gateway_factory({"policy": {"scores_file": str(scores)}}, relay=smtp_sink.url)
    subject = "odd charset " + charset.strip(b'"').replace(b"\x00", b"0").decode()
    raw = (b"From: dana.reyes@example.org\r\nTo: user@example.com\r\n"
           b"Subject: " + subject.encode() + b"\r\n"
           b"Content-Type: text/plain; charset=" + charset + b"\r\n\r\n"
           b"Short note.\r\n")
    assert gateway.send(raw).startswith("2.0.0")
    assert gateway.verdict(subject)["action"] == "tag"
    delivered = smtp_sink.wait_for(1)[0].data
    head, body = delivered.split(b"\r\n\r\n", 1)
    assert b"X-Mailward-Verdict: tag" in head
    assert body.endswith(b"Short note.\r\n")
    assert b"-" * 40 in body and body.isascii()
    assert "Traceback" not in gateway.log()
