"""Hostile content: every message is judged in bounded time, and tricks are findings."""

from __future__ import annotations

import time

import pytest

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
