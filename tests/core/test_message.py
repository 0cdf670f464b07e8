"""The parsed message: structure, headers and views, on hostile input."""

from __future__ import annotations

import json
import time

import pytest

from mailward.message import Mailbox, Message
from mailward.mime import Limits
from tests.support.gateway import SHARED


def test_lf_files_and_the_mbox_line_become_canonical():
    message = Message(b"From someone@example.org Wed Aug 21 16:18:52 2002\n"
                      b"From: a@example.org\nSubject: hi\n\nbody\n")
    assert message.raw == b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    assert "MBOX_FROM_LINE" in message.defects
    assert message.subject == "hi"


@pytest.mark.parametrize("value", json.loads(
    (SHARED / "cases/C08_parseaddr_specials.json").read_text())["inputs"])
def test_address_specials_are_malformed_never_an_address(value):
    message = Message(f"From: {value}\r\nSubject: x\r\n\r\nhi\r\n".encode())
    assert message.from_addresses == []
    assert message.from_domain is None
    assert "FROM_MALFORMED" in message.defects


@pytest.mark.parametrize("value", ["alice@example.org,bob@example.com",
                                   "undisclosed-recipients:;", "", "<>"])
def test_from_without_exactly_one_address_has_no_domain(value):
    message = Message(f"From: {value}\r\n\r\nhi\r\n".encode())
    assert message.from_domain is None


def test_multiple_from_headers_are_a_defect():
    message = Message((SHARED / "cases/C11_multiple_from.eml").read_bytes())
    assert message.from_addresses == [] and message.from_domain is None
    assert "FROM_MULTIPLE" in message.defects


@pytest.mark.parametrize("value, name, address", [
    ("Jane Doe, CEO <jane.doe.ceo@gmail.com>", "Jane Doe, CEO", "jane.doe.ceo@gmail.com"),
    ("Microsoft account team ,_<no-reply@x.example>", "Microsoft account team",
     "no-reply@x.example"),
    ('"Jane \\"JD\\" Doe" , <jd@x.example>', 'Jane "JD" Doe', "jd@x.example"),
    ("=?utf-8?B?SmFuZSBEb2UsIENFTw==?= ,<jd@x.example>", "Jane Doe, CEO", "jd@x.example"),
    ("Jane Doe jd@x.example", "Jane Doe", "jd@x.example"),
    ("Jane Doe <a@x.example> <b@y.example>", "Jane Doe <a@x.example>", "b@y.example"),
    ("alice@example.org)<bob@example.com>", "alice@example.org)", "bob@example.com"),
    ('"Netflix" <"info@members.netflix.com">', "Netflix", "info@members.netflix.com"),
    ("Ihr Team,(<news@x.example>)", "Ihr Team", "news@x.example"),
    ("Mcafee <support@pot@y.example>", "Mcafee", "support@pot@y.example"),
])
def test_a_malformed_from_has_a_lenient_reading_but_no_strict_address(value, name, address):
    message = Message(f"From: {value}\r\nSubject: x\r\n\r\nhi\r\n".encode())
    assert message.from_lenient == Mailbox(name, address)
    assert message.from_addresses == [] and message.from_domain is None
    assert "FROM_MALFORMED" in message.defects


@pytest.mark.parametrize("value", ["Jane <a@x.example> b@y.example", "a@x.example b@y.example",
                                   "Jane Doe", "<>", "undisclosed-recipients:;",
                                   'Jane <"not an address">', "Shop <shop,example>",
                                   "Jane <a@x.example>, Bob <b@y.example>"])
def test_no_lenient_reading_without_exactly_one_address(value):
    message = Message(f"From: {value}\r\n\r\nhi\r\n".encode())
    assert message.from_lenient is None


def test_no_lenient_reading_of_several_from_headers():
    message = Message((SHARED / "cases/C11_multiple_from.eml").read_bytes())
    assert message.from_lenient is None
    assert "FROM_MULTIPLE" in message.defects


def test_the_lenient_reading_of_a_well_formed_from_is_its_mailbox():
    message = Message(b"From: =?utf-8?q?Ren=C3=A9e?= <renee@Example.ORG>\r\n\r\nx\r\n")
    assert message.from_lenient == message.from_addresses[0]


def test_the_lenient_reading_of_a_hostile_from_is_linear():
    # An unclosed quote before 200,000 escaped quotes: a backtracking reading
    # of quoted strings takes minutes on it.
    from mailward.message import _lenient_mailbox

    value = '"' + '\\"' * 200_000 + " <a@x.example>"
    started = time.monotonic()
    assert _lenient_mailbox(value).address == "a@x.example"
    assert time.monotonic() - started < 5
    # In a message, a From that long is not read at all, strictly or leniently.
    started = time.monotonic()
    message = Message(f"From: {value}\r\n\r\nx\r\n".encode())
    assert message.from_lenient is None and message.from_addresses == []
    assert "HEADER_TOO_LONG:from" in message.all_defects
    assert time.monotonic() - started < 5


def test_well_formed_from_with_encoded_display_name():
    message = Message(b"From: =?utf-8?q?Ren=C3=A9e?= <renee@Example.ORG>\r\n\r\nx\r\n")
    [mailbox] = message.from_addresses
    assert mailbox.display_name == "Ren\u00e9e" and mailbox.domain == "example.org"


def test_raw_8bit_headers_are_read_as_utf8():
    message = Message("Subject: caf\u00e9\r\nFrom: J\u00fcrgen <j@example.org>\r\n\r\nx".encode())
    assert message.subject == "caf\u00e9"
    assert message.from_addresses[0].display_name == "J\u00fcrgen"


def test_garbage_8bit_headers_never_raise():
    message = Message(b"Subject: \xff\xfe\x00bad\r\nFrom: \x80\x81 <a@b.example>\r\n"
                      b"Content-Type: text/plain; charset=\"x-unknown-\xff\"\r\n\r\n\xff\xfe")
    assert isinstance(message.subject, str)
    assert isinstance(message.text, str)
    assert any(d.startswith("UNKNOWN_CHARSET") for d in message.all_defects)


def test_fake_close_delimiter_is_body_text():
    message = Message((SHARED / "cases/C06_mime_fake_close_boundary.eml").read_bytes())
    first, second = message.root.children
    assert first.text.endswith("--b1--x")
    assert second.filename == "statement.html"


def test_boundary_prefix_of_parent_boundary_is_not_a_delimiter():
    raw = (b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
           b"--b1\r\nContent-Type: multipart/alternative; boundary=\"b1x\"\r\n\r\n"
           b"--b1x\r\nContent-Type: text/plain\r\n\r\ninner\r\n--b1x--\r\n"
           b"--b1\r\nContent-Type: text/html\r\n\r\n<p>second</p>\r\n--b1--\r\n")
    message = Message(raw)
    assert [e.content_type for e in message.entities] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html"]
    assert message.text_parts[0].text == "inner"


def test_multipart_nested_100_deep_is_bounded():
    raw = b""
    for depth in range(100):
        raw += f"Content-Type: multipart/mixed; boundary=\"b{depth}\"\r\n\r\n--b{depth}\r\n".encode()
    raw += b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    for depth in reversed(range(100)):
        raw += f"--b{depth}--\r\n".encode()
    message = Message(raw, limits=Limits(max_depth=30))
    assert max(e.depth for e in message.entities) <= 30
    assert "MIME_TOO_DEEP" in message.all_defects


def test_part_count_is_bounded():
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(500))
    message = Message(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n",
                      limits=Limits(max_parts=100))
    assert len(message.entities) <= 100
    assert "MIME_TOO_MANY_PARTS" in message.all_defects


def test_a_message_of_only_headers():
    message = Message(b"From: a@example.org\r\nSubject: nothing else")
    assert message.subject == "nothing else"
    assert message.text == ""


def test_a_1mb_header_line():
    message = Message(b"X-Long: " + b"a" * 1024 * 1024 + b"\r\nSubject: s\r\n\r\nbody")
    assert message.subject == "s" and message.text == "body"


def test_missing_close_delimiter_keeps_the_last_part():
    message = Message(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\none\r\n"
                      b"--z\r\nContent-Type: text/html\r\n\r\n<b>two</b>")
    assert "MULTIPART_NO_CLOSE_DELIMITER" in message.all_defects
    assert message.html_parts[0].text == "<b>two</b>"


def test_transfer_encodings_are_undone_tolerantly():
    message = Message(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n"
                      b"--z\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs!!bG8=\r\n"
                      b"--z\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nwor=\r\nld=3D\r\n"
                      b"--z--\r\n")
    assert [p.text for p in message.text_parts] == ["hello", "world="]


def test_rfc2231_and_encoded_word_filenames():
    message = Message(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
                      b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
                      b" filename*0*=utf-8''r%C3%A9;\r\n filename*1=sum.pdf\r\n\r\nx\r\n--z\r\n"
                      b"Content-Type: application/pdf; name=\"=?utf-8?q?b=C3=A9?=.pdf\"\r\n\r\n"
                      b"y\r\n--z--\r\n")
    assert [a.filename for a in message.attachments] == ["r\u00e9sum.pdf", "b\u00e9.pdf"]


def test_embedded_message_parts_are_walked():
    inner = b"From: x@example.net\r\nSubject: inner\r\n\r\nhttps://inner.example.net/a\r\n"
    message = Message(b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
                      b"Content-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--z--\r\n")
    assert "https://inner.example.net/a" in [u.url for u in message.urls]


def test_hidden_html_text_is_set_aside():
    message = Message((SHARED / "cases/C26_zerofont.eml").read_bytes())
    assert message.text.startswith("Your Microsoft 365 password expires today.")
    for hidden in ("scanned and confirmed safe", "banana", "football"):
        assert hidden not in message.text
        assert hidden in message.hidden_text


def test_first_of_finds_the_earliest_needle():
    import random

    from mailward.mime import first_of

    rng = random.Random(2)
    needles = (b"\n\r", b"\n\n", b"\r\r", b"\n\r\n")
    for _ in range(20_000):
        raw = bytes(rng.choice(b"\r\nab") for _ in range(rng.randint(0, 12)))
        chosen = tuple(rng.sample(needles, rng.randint(1, 4)))
        found = [raw.find(n) for n in chosen if raw.find(n) >= 0]
        assert first_of(raw, chosen) == (min(found) if found else -1), (raw, chosen)


def _plain_normalize_text(text: str) -> str:
    """The plain form of htmltext.normalize_text, step by step."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFKC", text)
    text = text.translate(dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\u00a0\u2000-\u200a\u3000]+", " ", text)
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def test_normalize_text_agrees_with_its_plain_form(shared):
    import random

    from mailward.htmltext import normalize_text

    rng = random.Random(4)
    alphabet = " \t\u00a0\u2002\u200a\u3000\u200b\u00ad\ufeff\r\nab\ufb01\u2460"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert normalize_text(text) == _plain_normalize_text(text), repr(text)
    for path in sorted((shared / "corpus" / "spam" / "spam").iterdir())[:150]:
        message = Message(path.read_bytes())
        for part in message.text_parts + message.html_parts:
            assert normalize_text(part.text) == _plain_normalize_text(part.text)


@pytest.mark.parametrize("block", [
    b"From: a@example.org\r\nTo: b@example.org,\r\n c@example.org\r\n\r\n",
    b"From: a@example.org\nSubject:  hi \n\tthere\n\nbody\nmore",
    b"From someone@example.org Wed Aug 21 16:18:52 2002\nFrom: a@example.org\n",
    b"Subject: x\r\nFrom someone Wed\r\nTo: y\r\n\r\n",  # a misplaced envelope line
    b" leading continuation\r\nFrom: a@example.org\r\n\r\n",
    b"Subject: x\r\nnot a header line\r\nTo: y\r\n\r\n",
    b":no name\r\nSubject: x\r\n\r\n",
    b"Subject: x\rTo: y\n\r\n",  # mixed line ends
    b"Subject: caf\xc3\xa9\r\n\xff: x\r\n\r\n",  # 8-bit
    b"Subject: x\r\nTo: y",  # no empty line, no final line end
    b"", b"\r\n", b"Subject:\r\n\r\n",
])
def test_header_blocks_are_read_as_the_standard_library_reads_them(block):
    from email import policy
    from email.parser import BytesHeaderParser

    from mailward.mime import parse_header_block

    expected = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    parsed = parse_header_block(block)
    assert list(parsed.raw_items()) == list(expected.raw_items())
    assert parsed.get_payload() == expected.get_payload()
    assert parsed.get_unixfrom() == expected.get_unixfrom()
    assert [type(d) for d in parsed.defects] == [type(d) for d in expected.defects]


def test_a_header_parsed_once_still_counts_its_defect_at_each_reading():
    long_to = "To: " + ",".join(f"r{n}@example.org" for n in range(900))
    message = Message(f"From: a@example.org\r\n{long_to}\r\n\r\nhi\r\n".encode())
    assert message.addresses("to") == [] and message.addresses("to") == []
    assert message.root.defects.count("HEADER_TOO_LONG:to") == 2
    assert message.addresses("from") == message.addresses("from") != []


@pytest.mark.parametrize("value", [
    "alice@example.org", "Alice Smith <alice@example.org>", '"Smith, Alice" <a.s@mail-1.example.org>',
    '"" <a@example.org>', '"  two  spaces " <a+tag@example.org>',
    "a@example.org,b@example.org, Bob <b_2@example.net>",
    "Alice  Smith <alice@example.org>", "a..b@example.org", "a@-example.org", "a@example.org ",
    "Alice <alice@example.org", "Dr. Alice <alice@example.org>", "=?utf-8?q?Al?= <a@example.org>",
    "a@example.org,, b@example.org", "undisclosed-recipients:;",
    "<alice@example.org>", '"alice@example.org" <alice@example.org>',
    "<a@example.org>, Bob <b@example.org>", "<a@example.org", "<a @example.org>",
    "<a@example.org>>", '"a@b" <c@example.org>, <d@example.org>',
])
def test_plain_address_lists_read_as_the_strict_parser_reads_them(value):
    from email import policy

    from mailward.message import _strict_mailboxes

    message = Message(f"From: {value}\r\nTo: {value}\r\n\r\nhi\r\n".encode())
    parsed = _strict_mailboxes(policy.default.header_factory("to", value))
    assert message.addresses("to") == (parsed or [])
    assert message.from_addresses == (parsed or [])


def test_a_slow_message_does_not_hold_up_another_messages_views():
    # Each message is judged on its own worker thread: while one computes its
    # URLs, another message's URLs must not wait for it.
    import threading

    release = threading.Event()

    class Stuck(Message):
        @property
        def html_parts(self):
            release.wait(30)  # the slow part of a hostile message, held open
            return super().html_parts

    raw = b"From: a@example.org\r\nSubject: x\r\n\r\nsee https://fast.example.org/\r\n"
    stuck, fast = Stuck(raw), Message(raw)
    slow = threading.Thread(target=lambda: stuck.urls, daemon=True)
    slow.start()
    time.sleep(0.2)  # the slow thread is inside its computation of urls
    quick = threading.Thread(target=lambda: fast.urls, daemon=True)
    quick.start()
    quick.join(5)
    try:
        assert not quick.is_alive(), "one message's urls waited for another's"
        assert [u.url for u in fast.urls] == ["https://fast.example.org/"]
        assert slow.is_alive()
    finally:
        release.set()
        slow.join(5)
    assert [u.url for u in stuck.urls] == ["https://fast.example.org/"]


def test_views_are_computed_once_per_message():
    from mailward.cached import cached_property

    message = Message(b"Subject: once\r\n\r\nbody\r\n")
    assert isinstance(Message.__dict__["subject"], cached_property)
    assert "subject" not in message.__dict__
    assert message.subject == "once" and message.__dict__["subject"] == "once"
    message.__dict__["subject"] = "kept"
    assert message.subject == "kept"
    assert Message(b"Subject: other\r\n\r\nbody\r\n").subject == "other"


@pytest.mark.parametrize("raw, canonical", [
    (b"Subject: a\n\nbody\n", b"Subject: a\r\n\r\nbody\r\n"),
    (b"Subject: a\r\n\nbody\rx\n", b"Subject: a\r\n\r\nbody\r\nx\r\n"),
    (b"From a@b Mon\nSubject: a\n\nb", b"Subject: a\r\n\r\nb")])
def test_bare_line_ends_become_crlf_and_a_defect(raw, canonical):
    from mailward.mime import canonicalize

    assert canonicalize(raw)[0] == canonical
    assert "BARE_NEWLINE_NORMALIZED" in canonicalize(raw)[1]
    assert canonicalize(canonical) == (canonical, [])
