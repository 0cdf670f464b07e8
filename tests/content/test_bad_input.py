"""Hostile content: every message is judged in bounded time, and tricks are findings."""

from __future__ import annotations

import time

import pytest

from mailward.htmltext import MAX_DEPTH

HEAD = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\n"


def poisoned_text() -> bytes:
    # Telling words split by zero-width characters so that no token matches.
    words = "verify your pass\u200bword now, your acc\u200dount will be sus\u200cpended"
    return (HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + (words * 3).encode() + b"\r\n")


BAD = {
    "huge_body": HEAD + b"Content-Type: text/plain\r\n\r\n"
                 + b"cheap pills buy now " * 1_500_000 + b"\r\n",
    "binary_junk_in_text": HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
                           + bytes(range(256)) * 4000 + b"\r\n",
    "unknown_charset": HEAD + b"Content-Type: text/plain; charset=x-no-such-charset-42\r\n\r\n"
                       + "Grüße, ça va? ¿qué tal?".encode("latin-1") * 200 + b"\r\n",
    "nested_html_10000": HEAD + b"Content-Type: text/html\r\n\r\n"
                         + b"<div>" * 10_000 + b"deep text" + b"</div>" * 10_000 + b"\r\n",
    "nested_unclosed_font_10000": HEAD + b"Content-Type: text/html\r\n\r\n"
                                  + b"<font size=0><b>" * 10_000 + b"x\r\n",
    "zero_width_poisoning": poisoned_text(),
}

# A megabyte of each shape of markup that once cost lexbor, or a scan over
# it, time growing faster than the input.
HOSTILE_HTML = {
    "nested_div_200000": b"<div>" * 200_000,
    "nested_ul_250000": b"<ul>" * 250_000,
    # As deep as the parser is given, then markup that makes it search that deep.
    "deep_then_paragraphs": b"<span>" * (MAX_DEPTH - 1) + b"<p>x" * 200_000,
    "deep_then_end_tags": b"<span>" * (MAX_DEPTH - 1) + b"</x>" * 250_000,
    "deep_then_list_items": b"<span>" * (MAX_DEPTH - 1) + b"<li>" * 250_000,
    "deep_then_links": b"<span>" * (MAX_DEPTH - 1)
                       + b"<a href=http://x.example.com/>x</a>" * 30_000,
    "href_repeated": b"<a href=" * 125_000,
    "links_unclosed": b"<a href=http://a.example.com/>" * 35_000,
    "lt_1mb": b"<" * 1_000_000,
    "long_attribute_unclosed": b'<a href="' + b"x" * 1_000_000,
    "long_attribute_value": b'<a href="http://e.example.com/' + b"x" * 1_000_000
                            + b'">x</a>',
    "unclosed_quote_repeated": b"<div title='x>" * 70_000,
    "nested_hidden_spans": b"<span style='display:none'>x" * 35_000,
    "comments_unclosed": b"<!--" * 250_000,
    "scripts_unclosed": b"<script>" * 125_000,
    "nested_tables": b"<table><tr><td>" * 65_000,
}
BAD.update({"html_" + name: HEAD + b"Content-Type: text/html\r\n\r\n" + body + b"\r\n"
            for name, body in HOSTILE_HTML.items()})


async def judge(services, raw: bytes):
    from mailward.content.hidden import HiddenTextCheck
    from mailward.content.language import LanguageCheck
    from mailward.content.spam import SpamModelCheck
    from mailward.content.structure import StructureCheck
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task, prepare

    task = Task(Envelope(queue_id="bad"), services, Message(raw))
    prepare(task.message)
    for check in (StructureCheck(), HiddenTextCheck(), LanguageCheck.from_services(services),
                  SpamModelCheck.from_services(services)):
        task.findings.extend(await check.check(task))
    return task


@pytest.mark.parametrize("name", sorted(BAD))
async def test_hostile_content_is_judged_in_bounded_time(services, name):
    # CPU time, not wall time: the bound is on the work, whatever else the machine runs.
    started = time.process_time()
    task = await judge(services, BAD[name])
    assert time.process_time() - started < 15
    symbols = {f.symbol for f in task.findings}
    assert symbols & {"SPAM_MODEL", "HAM_MODEL"}
    assert 0 <= task.scratch["spam_probability"] <= 1


@pytest.mark.parametrize("name", sorted(HOSTILE_HTML))
def test_a_megabyte_of_hostile_html_is_read_in_two_seconds(name):
    from mailward.content.features import html_tokens
    from mailward.message import Message
    from mailward.pipeline import prepare

    message = Message(BAD["html_" + name])
    message.text_parts  # the MIME parse is not what is measured
    started = time.process_time()
    prepare(message)
    message.hidden_text
    html_tokens(message)
    assert time.process_time() - started < 2


def test_text_past_the_nesting_cap_is_still_read():
    from mailward.message import Message

    message = Message(HEAD + b"Content-Type: text/html\r\n\r\n" + b"<div>" * 200_000
                      + b"deep <a href='http://deep.example.net/x'>text</a>"
                      + b"</div>" * 200_000 + b"\r\n")
    assert message.text == "deep text"
    assert [u.url for u in message.urls] == ["http://deep.example.net/x"]


def test_html_within_the_nesting_cap_is_parsed_as_written():
    from mailward.htmltext import cap_depth

    html = ("<!doctype html><table><tr><td><p>a<p>b<ul><li>c<li>d</ul><br><img src=x>"
            + "<div class='a>b'>" * (MAX_DEPTH - 4) + "<script><div><div></script>e")
    assert cap_depth(html) is html
    assert cap_depth(html + "<div><span>f") == html + "f"
    # At the cap, and one past it, with nothing else to count.
    assert cap_depth("<div>" * 3 + "x", max_depth=3) == "<div>" * 3 + "x"
    assert cap_depth("<div>" * 4 + "x</div>", max_depth=3) == "<div>" * 3 + "x</div>"


async def test_a_huge_body_is_judged_by_a_prefix_and_says_so(services):
    from mailward.content.features import MAX_TEXT, spam_tokens

    task = await judge(services, BAD["huge_body"])
    prefix = [f for f in task.findings if f.symbol == "CONTENT_PREFIX_ONLY"]
    assert prefix and f"first {MAX_TEXT} of" in prefix[0].detail
    assert len(spam_tokens(task.message)) < 4 * MAX_TEXT


async def test_zero_width_poisoning_is_a_finding_and_does_not_hide_the_words(services):
    from mailward.content.features import spam_tokens

    task = await judge(services, BAD["zero_width_poisoning"])
    found = {f.symbol: f for f in task.findings}
    assert "9 zero-width" in found["CONTENT_ZERO_WIDTH"].detail
    assert {"password", "account", "suspended"} <= set(spam_tokens(task.message))
    assert "LANG_CREDENTIAL_REQUEST" in found and "LANG_THREAT" in found


async def test_ordinary_markup_is_not_hidden_text(services):
    raw = (HEAD + b"Content-Type: text/html\r\n\r\n<p style='font-size:12px'>Lunch at one?"
           b"</p><p style='color:#333'>See you</p>\r\n")
    task = await judge(services, raw)
    assert not {f.symbol for f in task.findings} & {"CONTENT_HIDDEN_TEXT", "CONTENT_ZERO_WIDTH"}


def test_hidden_text_reaches_the_verdict_over_smtp(gateway_factory, shared):
    gateway = gateway_factory()
    with gateway.smtp() as client:
        client.mail("sender@example.org")
        client.rcpt("user@example.com")
        code, text = client.data((shared / "cases" / "C26_zerofont.eml").read_bytes())
        assert code == 250, text
        hidden_id = text.decode().rsplit(" ", 1)[-1]
        client.mail("sender@example.org")
        client.rcpt("user@example.com")
        code, text = client.data(poisoned_text())
        assert code == 250, text
        poisoned_id = text.decode().rsplit(" ", 1)[-1]
    for queue_id, symbol in ((hidden_id, "CONTENT_HIDDEN_SALTING"),
                             (poisoned_id, "CONTENT_ZERO_WIDTH")):
        line = gateway.wait_log(f"{queue_id}: peer=")
        assert symbol in line.split(f"{queue_id}: peer=")[1].split("\n")[0]
    assert "Traceback" not in gateway.log()
