"""What delivered mail looks like: verdict headers and banners, byte-exact elsewhere."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest

from mailward import actions
from mailward.message import Message
from mailward.verdict import Action, Category, ScoredFinding, Verdict
from tests.support.gateway import SHARED

EXTERNAL = "CAUTION: external sender."
SUSPICIOUS = "WARNING: suspicious ({reasons})."


def verdict(action: Action = Action.TAG, category: Category = Category.SPAM,
            symbols: tuple[str, ...] = ("SPAM_MODEL",)) -> Verdict:
    findings = [ScoredFinding(s, category, 6.0, "") for s in symbols]
    return Verdict(action=action, score=6.0, reason="test", findings=findings,
                   categories={str(category): 6.0}, category=category)


def render(raw: bytes, v: Verdict) -> bytes:
    return actions.render(Message(raw), v, "qid123", external_text=EXTERNAL,
                          suspicious_text=SUSPICIOUS)


def test_deliver_adds_headers_and_changes_nothing_else():
    raw = (SHARED / "cases/C10_encoded_word_refold.eml").read_bytes()
    out = render(raw, verdict(Action.DELIVER))
    assert out.endswith(raw)
    head = out[: len(out) - len(raw)].decode()
    assert head.startswith("X-Mailward-Queue-Id: qid123\r\nX-Mailward-Verdict: deliver;")


def test_forged_verdict_headers_are_removed():
    raw = b"X-Mailward-Verdict: deliver; score=-99\r\nX-Mailward-Folded: a\r\n b\r\nSubject: s\r\n\r\nx\r\n"
    out = render(raw, verdict(Action.DELIVER))
    assert out.count(b"X-Mailward-Verdict") == 1
    assert b"score=-99" not in out and b"X-Mailward-Folded" not in out
    assert out.endswith(b"Subject: s\r\n\r\nx\r\n")


def test_banner_keeps_addresses_one_each_after_rewrite():
    raw = (SHARED / "cases/C10_encoded_word_refold.eml").read_bytes()
    out = render(raw, verdict())
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    [to] = parsed["to"].addresses
    assert to.addr_spec == "to@example.com"
    assert to.display_name == "A v\u00e9ry long name with non-ASCII char and, comma"
    [cc] = parsed["cc"].addresses
    assert cc.addr_spec == "cc@example.com"
    assert "WARNING: suspicious (it looks like spam)." in parsed.get_content()
    assert out.split(b"\r\n\r\n", 1)[0].endswith(raw.split(b"\r\n\r\n", 1)[0])


@pytest.mark.parametrize("encoding", ["7bit", "quoted-printable", "base64", "8bit"])
@pytest.mark.parametrize("subtype", ["plain", "html"])
def test_banner_in_every_transfer_encoding(encoding, subtype):
    text = "Hello Bob,\r\nthe caf\u00e9 is open.\r\n" if subtype == "plain" else \
        "<html><body class=\"x\"><p>Hello caf\u00e9</p></body></html>\r\n"
    data = text.encode("utf-8")
    if encoding == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        import quopri

        body = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    else:
        body = data
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative;"
           b" boundary=zz\r\n\r\n--zz\r\nContent-Type: text/" + subtype.encode() +
           b"; charset=utf-8\r\nContent-Transfer-Encoding: " + encoding.encode() + b"\r\n\r\n" +
           body + b"\r\n--zz--\r\n")
    out = render(raw, verdict())
    message = Message(out)
    [part] = message.leaves
    assert part.transfer_encoding == encoding
    assert part.charset == "utf-8"
    decoded = part.text
    assert "WARNING: suspicious" in decoded
    assert "caf\u00e9" in decoded
    if subtype == "html":
        assert decoded.index("<body") < decoded.index("WARNING")
    assert message.all_defects == []


def test_signed_parts_are_not_touched():
    raw = (b"From: a@example.org\r\nContent-Type: multipart/signed; protocol=\"application/"
           b"pkcs7-signature\"; boundary=s\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n"
           b"signed text\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n")
    out = render(raw, verdict())
    assert out.endswith(raw)


def test_external_banner_wording():
    v = verdict(Action.TAG, Category.POLICY, ("EXTERNAL_SENDER",))
    v.categories = {"policy": 0.0}
    out = render(b"From: a@example.net\r\n\r\nhello\r\n", v)
    assert b"CAUTION: external sender." in out
    assert b"WARNING" not in out


def test_spam_tag_sets_the_spam_flag():
    out = render(b"Subject: s\r\n\r\nbody\r\n", verdict())
    assert b"\r\nX-Spam-Flag: YES\r\n" in out
