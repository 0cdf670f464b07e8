"""Rewriting: signed per-recipient links, valid MIME after the splice, nothing it must not touch."""

from __future__ import annotations

import base64
import email
import re
from email import policy

import pytest
from selectolax.lexbor import LexborHTMLParser

from mailward import actions
from mailward.message import Message
from mailward.urls.normalize import scheme_of
from mailward.urls.rewrite import CopyRewriter, allowed, rewritable, start_tags
from mailward.urls.signing import KeyRing, Signer, url_from_query
from mailward.verdict import Action, Category, Verdict
from tests.urls import builders as b

BASE = "https://mx.example.com"
OURS = re.compile(r"https://mx\.example\.com/u/[^\s\"'<>]+")


@pytest.fixture
def signer(tmp_path) -> Signer:
    keys = KeyRing(tmp_path / "keys.json")
    keys.load()
    return Signer(keys, BASE)


def deliver(raw: bytes, signer: Signer, recipient: str = "sam@example.com",
            allow: list[str] | None = None, action: Action = Action.DELIVER) -> bytes:
    verdict = Verdict(action=action, score=5.0, reason="", findings=[],
                      categories={Category.PHISH: 5.0} if action == Action.TAG else {})
    rewriter = CopyRewriter(signer, "q1", recipient, allow or [])
    return actions.render(Message(raw), verdict, "q1", external_text="external",
                          suspicious_text="suspicious {reasons}", rewrite=rewriter.part)


def links(raw: bytes) -> list[str]:
    found = []
    for part in Message(raw).text_parts + Message(raw).html_parts:
        found.extend(OURS.findall(part.text.replace("&amp;", "&")))
    return found


def originals(raw: bytes, signer: Signer) -> list[str]:
    return [signer.decode(link).url for link in links(raw)]


# Signing.


def test_links_verify_and_any_change_breaks_them(signer):
    link = signer.link("https://a.example.net/x?y=1&z=2#f", "q1", "sam@example.com")
    assert "sam" not in link and "example.com/u" not in link.split("/u/")[1]
    decoded = signer.decode(link)
    assert decoded.valid and decoded.url == "https://a.example.net/x?y=1&z=2#f"
    assert signer.recipient_of(decoded, ["kim@example.com", "Sam@Example.com"]) == "Sam@Example.com"
    for position in range(len(BASE) + 3, len(link)):
        changed = link[:position] + ("x" if link[position] != "x" else "y") + link[position + 1:]
        assert not signer.decode(changed).valid, changed


def test_per_recipient_links_differ(signer):
    one = signer.link("https://a.example.net/", "q1", "sam@example.com")
    two = signer.link("https://a.example.net/", "q1", "kim@example.com")
    assert one != two and signer.decode(one).valid and signer.decode(two).valid


def test_rotation_keeps_old_links_and_retiring_breaks_them(signer):
    old = signer.link("https://a.example.net/", "q1", "sam@example.com")
    new_key = signer.keys.rotate()
    new = signer.link("https://a.example.net/", "q1", "sam@example.com")
    assert f"/u/1.{new_key.id}." in new and signer.decode(old).valid
    assert signer.keys.retire("1")
    assert not signer.decode(old).valid and signer.decode(new).valid
    assert not signer.keys.retire(new_key.id)  # never the last key
    assert (signer.keys.path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("token", ["", "1", "1.1.q.x.y", "2.1.q1.aaaaaaaaaaaaaaaa." + "A" * 22,
                                   "\x00\xff" * 300, "1.1.q1." + "a" * 16 + "." + "A" * 22])
def test_random_tokens_are_refused(signer, token):
    assert not signer.verify(token, "https://a.example.net/").valid


def test_query_decoding_keeps_unencoded_ampersands():
    assert url_from_query("u=https://a.example/x?b=1&c=2") == "https://a.example/x?b=1&c=2"
    assert url_from_query("go=1&u=https://a.example/%23x") == "https://a.example/#x"
    assert url_from_query("u=%ff%fe") == ""


# What is rewritten, what is not.


def test_cases_links_rewritten_in_both_parts(shared, signer):
    out = deliver((shared / "cases/C20_url_qp_softbreak.eml").read_bytes(), signer)
    assert sorted(originals(out, signer)) == sorted([
        "https://files.example.net/doc/12345/view", "https://files.example.net/doc/678",
        "https://login.example.net/verify?u=1", "https://cdn.example.net/track"])
    parsed = email.message_from_bytes(out, policy=policy.default)
    for part in parsed.walk():
        if not part.is_multipart():
            assert part["content-transfer-encoding"] == "quoted-printable"
            assert all(len(line) <= 76 for line in part.get_payload().splitlines())


def test_base_href_links_become_absolute(shared, signer):
    out = deliver((shared / "cases/C22_url_base_href.eml").read_bytes(), signer)
    assert originals(out, signer) == ["https://evil.example.net/files/report/q4.html"]
    tree = LexborHTMLParser(Message(out).html_parts[0].text)
    assert all(OURS.fullmatch(a.attributes["href"]) for a in tree.css("a[href]"))


@pytest.mark.parametrize("case, url", [
    ("C26_zerofont.eml", "https://evil.example.net/keep"),
    ("C15_dkim_l_tag_appended.eml", "https://evil.example.net/mailbox"),
    ("C10_encoded_word_refold.eml", "https://docs.example.org/q4"),
])
def test_case_links_rewritten(shared, signer, case, url):
    out = deliver((shared / "cases" / case).read_bytes(), signer)
    assert url in originals(out, signer)


def test_homoglyph_links_rewritten_and_decoded_as_sent(shared, signer):
    out = deliver((shared / "cases/C24_url_homoglyph_idn.eml").read_bytes(), signer)
    assert set(originals(out, signer)) == {"https://bаnk.example/login",
                                           "https://xn--bnk-6cd.example/reset",
                                           "https://bücher.example/"}


def test_headers_are_never_refolded(shared, signer):
    out = deliver((shared / "cases/C10_encoded_word_refold.eml").read_bytes(), signer)
    parsed = email.message_from_bytes(out, policy=policy.default)
    [to] = parsed["to"].addresses
    assert to.addr_spec == "to@example.com"
    assert to.display_name == "A véry long name with non-ASCII char and, comma"
    [cc] = parsed["cc"].addresses
    assert cc.addr_spec == "cc@example.com"


def test_not_rewritten_mailto_other_schemes_allowlist_and_ours(signer):
    html = ('<a href="mailto:a@example.org">m</a> <a href="tel:+15550100">t</a> '
            '<a href="ftp://files.example.org/">f</a> <a href="https://docs.example.org/x">d</a> '
            '<a href="https://deep.trusted.example/y">t</a> <a href="https://trusted.example/z">z</a>'
            '<a href="#top">anchor</a>')
    out = deliver(b.message(b.text_part(html, "text/html")), signer,
                  allow=["docs.example.org", "*.trusted.example"])
    assert originals(out, signer) == ["https://trusted.example/z"]
    for kept in (b"mailto:a@example.org", b"tel:+15550100", b"ftp://files.example.org/",
                 b'"https://docs.example.org/x"', b'"https://deep.trusted.example/y"', b"#top"):
        assert kept in out
    again = deliver(out, signer, allow=["docs.example.org", "*.trusted.example"])
    assert links(again) == links(out)  # our own links are not wrapped again


def test_allow_rules():
    assert allowed("a.b.example.com", ["*.example.com"])
    assert not allowed("example.com", ["*.example.com"])
    assert allowed("Example.COM.", ["example.com"])
    assert not allowed("evilexample.com", ["*.example.com", "example.com"])


def test_signed_and_encrypted_parts_are_left_alone(signer):
    signed = (b"From: a@example.org\r\nTo: sam@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; "
              b"micalg=sha-256; boundary=\"s\"\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n"
              b"Signed https://signed.example.net/x\r\n--s\r\nContent-Type: application/"
              b"pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              b"AAAA\r\n--s--\r\n")
    out = deliver(signed, signer)
    assert out.endswith(signed) and links(out) == []


def test_attachments_and_attached_messages_are_left_alone(signer):
    attached = (b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; "
                b"filename=\"fwd.eml\"\r\n\r\nFrom: x@example.org\r\nSubject: inner\r\n\r\n"
                b"Inner https://inner.example.net/x\r\n")
    raw = b.message(b.text_part("Body https://body.example.net/b"),
                    b.attachment("page.html", "text/html",
                                 b"<a href='https://attached.example.net/a'>x</a>"),
                    attached)
    out = deliver(raw, signer)
    assert originals(out, signer) == ["https://body.example.net/b"]
    assert b"Inner https://inner.example.net/x" in out
    assert not rewritable(Message(raw).text_parts[-1])


def test_base64_parts_stay_base64(signer):
    raw = b.message(b.text_part('<a href="https://b64.example.net/x">x</a>', "text/html",
                                "base64"))
    out = deliver(raw, signer)
    [part] = Message(out).html_parts
    assert part.transfer_encoding == "base64" and "BASE64_INVALID" not in part.defects
    assert originals(out, signer) == ["https://b64.example.net/x"]


def test_long_7bit_line_becomes_quoted_printable(signer):
    long_url = "https://long.example.net/" + "a" * 900
    raw = (b"From: a@example.org\r\nTo: sam@example.com\r\nSubject: l\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
           + long_url.encode() + b"\r\n")
    out = deliver(raw, signer)
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
    message = Message(out)
    assert message.root.transfer_encoding == "quoted-printable"
    assert message.count_header("content-transfer-encoding") == 1
    assert originals(out, signer) == [long_url]


def test_eight_bit_charset_bytes_outside_links_are_unchanged(signer):
    text = "Grüße, café: https://cafe.example.net/menü ¡fin!"
    raw = b.message(b.text_part(text, charset="iso-8859-1"))
    out = deliver(raw, signer)
    [part] = Message(out).text_parts
    assert part.payload.startswith("Grüße, café: ".encode("iso-8859-1"))
    assert part.payload.rstrip().endswith(" ¡fin!".encode("iso-8859-1"))
    assert originals(out, signer) == ["https://cafe.example.net/menü"]


@pytest.mark.parametrize("charset", ["cp037", "utf-16", "utf-32"])
def test_plain_text_labelled_with_a_charset_that_hides_it_is_read_and_rewritten(
        signer, charset):
    # Read as declared, these bytes are noise and the link is gone from the
    # checks; a reader that ignores the label still sees and follows it.
    html = '<p>Sign in: <a href="https://evil.example.net/login">here</a></p>'
    raw = b.message(b.text_part(html, "text/html")).replace(
        b"charset=utf-8", f"charset={charset}".encode())
    assert f"charset={charset}".encode() in raw
    message = Message(raw)
    assert [u.url for u in message.urls] == ["https://evil.example.net/login"]
    assert f"CHARSET_MISMATCH:{charset}" in message.all_defects
    out = deliver(raw, signer)
    assert originals(out, signer) == ["https://evil.example.net/login"]


def test_text_that_is_really_utf16_is_read_as_utf16(signer):
    text = "Grüße from a real UTF-16 part"
    raw = (b"From: a@example.org\r\nTo: sam@example.com\r\nSubject: u\r\n"
           b"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: base64"
           b"\r\n\r\n" + base64.b64encode(text.encode("utf-16")) + b"\r\n")
    message = Message(raw)
    assert message.text.strip() == text
    assert not any(d.startswith("CHARSET_MISMATCH") for d in message.all_defects)


def test_banner_and_rewriting_together(signer):
    raw = b.message(b.text_part('<body><a href="https://t.example.net/">x</a></body>',
                                "text/html", "quoted-printable"))
    out = deliver(raw, signer, action=Action.TAG)
    [part] = Message(out).html_parts
    assert "suspicious" in part.text and originals(out, signer) == ["https://t.example.net/"]


def test_start_tags_reads_as_the_tokenizer():
    source = ('<!-- <a href="https://comment.example/"> --><script>"<a href=x>"</script>'
              '<a/href=https://one.example/ href="https://two.example/">'
              '<A\nHREF = \'https://three.example/\'><a href="https://eof.example/')
    hrefs = [next(a.value for a in attributes if a.name == "href")
             for name, attributes in start_tags(source) if name == "a"]
    assert hrefs == ["https://one.example/", "https://three.example/"]


def test_every_link_a_browser_sees_is_rewritten_over_the_phishing_corpus(shared, signer):
    files = sorted((shared / "corpus/phishing").glob("*.eml"))[:400]
    assert files
    for path in files:
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out = Message(deliver(raw, signer))
        for part in out.html_parts:
            if not rewritable(part) or not part.spliceable or actions._protected(part):
                continue
            if part.charset.startswith(("utf-16", "utf-32")):
                continue
            tree = LexborHTMLParser(part.text)
            for node in tree.css("a[href], area[href]"):
                href = (node.attributes.get("href") or "").strip()
                if scheme_of(href) in ("http", "https") and "\n" not in href:
                    assert href.startswith(BASE + "/u/"), (path.name, href[:200])
        for part in out.text_parts:
            if rewritable(part) and part.spliceable and not actions._protected(part):
                for match in re.finditer(r"(?i)\bhttps?://[^\s<>\"']+", part.text):
                    assert match.group(0).startswith(BASE + "/u/") or \
                        BASE + "/u/" in part.text[max(0, match.start() - 200):match.start()], \
                        (path.name, match.group(0)[:200])
