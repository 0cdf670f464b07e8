"""End to end: links rewritten per recipient over real SMTP, clicks judged by the real server."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from tests.support.gateway import SHARED

LINKS = re.compile(rb'https?://127\.0\.0\.1:\d+/u/[^"\s<>]+(?<![.,])')
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"

MESSAGE = (b"From: Dana Reyes <dana@example.org>\r\nTo: user@example.com, boss@example.com\r\n"
           b"Subject: documents\r\nMessage-ID: <links@example.org>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n"
           b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Read https://docs.example.net/shared/q4?id=7&view=1 and www.files.example.org/a.\r\n"
           b"Mail me: mailto:dana@example.org\r\n"
           b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<p><a href=\"https://docs.example.net/shared/q4?id=7&amp;view=1\">Q4</a> "
           b"<a href=\"https://portal.example.net/login\">portal</a> "
           b"<a href=\"mailto:dana@example.org\">mail</a></p>\r\n--b--\r\n")


def _copies(sink, count: int) -> dict[str, bytes]:
    received = sink.wait_for(count)
    return {rcpt: item.data for item in received for rcpt in item.rcpt_tos}


def _click(url: str, method: str = "GET", agent: str = BROWSER) -> httpx.Response:
    return httpx.request(method, url.replace("&amp;", "&"), headers={"User-Agent": agent},
                         follow_redirects=False, timeout=10)


def _clicks(gateway, token: str, **params) -> list[dict]:
    answer = httpx.get(f"{gateway.web_url}/api/v1/url/clicks", params=params,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


@pytest.fixture
def delivered(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url, config={"urls": {"scanner_window": "0s"}})
    reply = gateway.send(MESSAGE, rcpts=["user@example.com", "boss@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    return gateway, queue_id, _copies(smtp_sink, 2)


def test_each_copy_carries_its_own_signed_links(delivered):
    gateway, queue_id, copies = delivered
    assert set(copies) == {"user@example.com", "boss@example.com"}
    mine, theirs = (set(LINKS.findall(copies[r])) for r in ("user@example.com", "boss@example.com"))
    # q4 is linked from both parts (one link), www.files only in text, portal only in HTML
    assert len(mine) == 3 and len(theirs) == 3
    assert not mine & theirs
    for data in copies.values():
        assert b"mailto:dana@example.org" in data
        assert b"user@example.com/u" not in data and b"user%40" not in data
        assert b"?u=https://docs.example.net/shared/q4?id=7%26view=1" in data  # readable
        assert b'href="https://docs.example.net' not in data
    assert all(queue_id.encode() in link for link in mine)


def test_a_click_redirects_to_the_original_and_is_logged(delivered):
    gateway, queue_id, copies = delivered
    link = next(l for l in LINKS.findall(copies["boss@example.com"]) if b"portal" in l).decode()
    answer = _click(link)
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://portal.example.net/login"
    assert answer.headers["referrer-policy"] == "no-referrer"
    [logged] = _clicks(gateway, gateway.token(), queue_id=queue_id)
    assert logged["recipient"] == "boss@example.com"
    assert logged["url"] == "https://portal.example.net/login"
    assert logged["verdict"] == "allowed" and logged["automated"] is False
    assert logged["client_ip"] == "127.0.0.1" and logged["user_agent"] == BROWSER
    from mailward.intel.store import url_hash

    assert logged["url_hash"] == url_hash("https://portal.example.net/login")


def test_a_click_just_before_the_gateway_stops_is_logged(delivered):
    gateway, queue_id, copies = delivered
    link = next(l for l in LINKS.findall(copies["user@example.com"]) if b"portal" in l).decode()
    assert _click(link).status_code == 302
    gateway.stop()  # at once: the click is still waiting for its batch
    gateway.start()
    [logged] = _clicks(gateway, gateway.token(), queue_id=queue_id)
    assert logged["recipient"] == "user@example.com"


def test_intelligence_added_after_delivery_blocks_the_next_click(delivered):
    gateway, queue_id, copies = delivered
    link = next(l for l in LINKS.findall(copies["user@example.com"]) if b"portal" in l).decode()
    assert _click(link).status_code == 302
    gateway.cli("intel", "add", "--type", "url", "https://portal.example.net/login",
                "--source", "feed-x")
    deadline = time.monotonic() + 10
    while (answer := _click(link)).status_code == 302 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert answer.status_code == 403
    assert "location" not in answer.headers
    assert "blocked" in answer.text and "feed-x" in answer.text
    assert "Continue to the site anyway" not in answer.text  # off for malicious
    assert _click(link.replace("?u=", "?go=1&u=")).status_code in (400, 403)
    logged = _clicks(gateway, gateway.token(), queue_id=queue_id)
    assert [c["verdict"] for c in logged][:1] == ["blocked"]
    assert all(c["recipient"] == "user@example.com" for c in logged)


def test_a_changed_character_or_random_token_is_400_and_never_a_redirect(delivered):
    gateway, queue_id, copies = delivered
    link = LINKS.findall(copies["user@example.com"])[0].decode()
    token_start = link.index("/u/") + 3
    for position in (link.index("?") - 3, token_start + 4, len(link) - 2):
        changed = link[:position] + ("A" if link[position] != "A" else "B") + link[position + 1:]
        answer = _click(changed)
        assert answer.status_code == 400, changed
        assert "location" not in answer.headers
    other = link.split("?u=")[0] + "?u=https://attacker.example.com/"
    assert _click(other).status_code == 400
    garbage = f"{gateway.web_url}/u/%00%ff%fe..{'x' * 5000}?u=%ff%fe%00"
    assert _click(garbage).status_code in (400, 404, 414)
    assert "refused click link" in gateway.wait_log("refused click link")
    assert _clicks(gateway, gateway.token(), queue_id=queue_id) == []


def test_scanners_are_marked_automated(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url, config={"urls": {"scanner_window": "1h"}})
    queue_id = gateway.send(MESSAGE, rcpts=["user@example.com"]).rsplit(" ", 1)[-1]
    link = LINKS.findall(_copies(smtp_sink, 1)["user@example.com"])[0].decode()
    assert _click(link, "HEAD").status_code == 302
    assert _click(link, agent="python-requests/2.31").status_code == 302
    assert _click(link).status_code == 302
    reasons = sorted(c["automated_reason"].split(" ")[0]
                     for c in _clicks(gateway, gateway.token(), queue_id=queue_id))
    assert len(reasons) == 3 and all(reasons)
    assert any(r == "HEAD" for r in reasons) and any(r == "scanner" for r in reasons)
    token = gateway.token()
    assert _clicks(gateway, token, queue_id=queue_id, human="true") == []


def test_rotated_keys_keep_old_links_working(delivered):
    gateway, queue_id, copies = delivered
    old = LINKS.findall(copies["user@example.com"])[0].decode()
    gateway.cli("url", "keys", "rotate")
    decoded = json.loads(gateway.cli("url", "decode", "--json", old).stdout)
    assert decoded["valid"] and decoded["recipient"] == "user@example.com"
    assert decoded["key_id"] == "1"
    time.sleep(1.2)  # the running server reloads the keys file
    assert _click(old).status_code == 302
    gateway.cli("url", "keys", "retire", "1")
    time.sleep(1.2)
    assert _click(old).status_code == 400


def test_decode_api_needs_a_token_and_returns_the_original(delivered):
    gateway, queue_id, copies = delivered
    link = LINKS.findall(copies["boss@example.com"])[0].decode()
    url = f"{gateway.web_url}/api/v1/url/decode"
    assert httpx.get(url, params={"url": link}, timeout=10).status_code == 401
    answer = httpx.get(url, params={"url": link}, timeout=10,
                       headers={"Authorization": f"Bearer {gateway.token()}"}).json()
    assert answer["valid"] and answer["queue_id"] == queue_id
    assert answer["recipient"] == "boss@example.com"
    assert answer["url"].startswith("https://docs.example.net/shared/q4?id=7&view=1") or \
        answer["url"] == "http://www.files.example.org/a"


def test_dot_stuffed_quoted_printable_link_is_rewritten_whole(gateway_factory, smtp_sink):
    case = json.loads((SHARED / "cases/C05_dot_stuffed_qp_url.json").read_text())
    # The case is about transport, not judgement: its sender is allowed so that it is delivered.
    gateway = gateway_factory(relay=smtp_sink.url, config={
        "urls": {"scanner_window": "0s"}, "policy": {"allow_senders": ["@example.org"]}})
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=30) as connection:
        reader = connection.makefile("rb")
        for step in case["steps"]:
            if "send" in step:
                connection.sendall(step["send"].encode("latin-1"))
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            expected = step.get("expect") or step.get("recv")
            assert reply.startswith(expected.encode()), (step, reply)
    [received] = smtp_sink.wait_for(1)
    from mailward.message import Message

    delivered = Message(received.data)
    [html] = delivered.html_parts
    [link] = LINKS.findall(html.payload)
    assert _click(link.decode()).headers["location"] == "https://login.example.net/verify?id=7"
    assert b"login.examplenet" not in html.payload


def test_suspicious_link_warns_and_continues_when_allowed(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url, config={"urls": {"scanner_window": "0s"}})
    raw = (b"From: dana@example.org\r\nTo: user@example.com\r\nSubject: s\r\n"
           b"Message-ID: <w@example.org>\r\n\r\n"
           b"Sign in: https://paypal.com@login.example.net/session\r\n"
           b"Long: https://long.example.net/" + b"a" * 20_000 + b"\r\n")
    gateway.send(raw, rcpts=["user@example.com"])
    from mailward.message import Message

    # The 20 kB line made the part quoted-printable: links are read from its payload.
    [part] = Message(_copies(smtp_sink, 1)["user@example.com"]).text_parts
    assert part.transfer_encoding == "quoted-printable"
    links = LINKS.findall(part.payload)
    trick = next(l for l in links if b"paypal.com@" in l).decode()
    answer = _click(trick)
    assert answer.status_code == 200 and "may be dangerous" in answer.text
    assert "paypal.com" in answer.text and "Continue to the site anyway" in answer.text
    onward = re.search(r'href="([^"]+)"', answer.text).group(1).replace("&amp;", "&")
    assert onward.startswith("/u/") and "go=1&" in onward
    followed = _click(gateway.web_url + onward)
    assert followed.status_code == 302
    assert followed.headers["location"] == "https://paypal.com@login.example.net/session"
    long_link = next(l for l in links if b"long.example.net" in l).decode()
    assert _click(long_link).status_code == 302  # a 20 kB request line is served
    verdicts = [c["verdict"] for c in _clicks(gateway, gateway.token())]
    assert verdicts[:3] == ["allowed", "clicked-through", "warned"]
