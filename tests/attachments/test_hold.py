"""Holding end to end: a real `mailward serve`, SMTP in, the sandbox, the verdict."""

from __future__ import annotations

import time

import httpx

from mailward.attachments.sandbox.browser import BrowserSandbox
from mailward.attachments.sandbox.confine import isolation_available
from tests.attachments import samples
from tests.attachments.test_sandbox import CapeServer
from tests.conftest import need


def browser_gateway(factory, relay):
    need(BrowserSandbox.available("/usr/bin/chromium"), "Debian's chromium and playwright")
    need(isolation_available(), "user and network namespaces (unshare)")
    return factory(config={"sandbox": {"backends": ["browser"], "deadline": "120s"}},
                   relay=relay)


def quarantine(gateway, token):
    answer = httpx.get(f"{gateway.web_url}/api/v1/quarantine",
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer.json()["items"]


def test_suspicious_page_is_held_then_quarantined_on_a_malicious_verdict(gateway_factory,
                                                                         smtp_sink):
    gateway = browser_gateway(gateway_factory, smtp_sink.url)
    raw = samples.message([("scan.html", "text/html", samples.disguised_smuggling_page())])
    queue_id = gateway.send(raw).rsplit(" ", 1)[-1]
    gateway.wait_log(f"{queue_id}: held for the sandbox")
    time.sleep(0.5)
    assert smtp_sink.messages == []
    log = gateway.wait_log(f"{queue_id}: hold resolved", timeout=90)
    assert "action=quarantine" in log and "ATTACH_SANDBOX_MALICIOUS" in log
    [item] = quarantine(gateway, gateway.token())
    assert item["queue_id"] == queue_id and item["reason"].startswith("sandbox verdict")
    assert smtp_sink.messages == []
    listed = gateway.cli("intel", "list", "--type", "sha256").stdout.decode()
    assert "sandbox" in listed


def test_clean_page_is_delivered_after_its_verdict(gateway_factory, smtp_sink):
    gateway = browser_gateway(gateway_factory, smtp_sink.url)
    raw = samples.message([("menu.html", "text/html", samples.CLEAN_PAGE)])
    queue_id = gateway.send(raw).rsplit(" ", 1)[-1]
    gateway.wait_log(f"{queue_id}: held for the sandbox")
    log = gateway.wait_log(f"{queue_id}: hold resolved", timeout=90)
    # Deliver, or tag when the spam model dislikes the short test text.
    assert "action=deliver" in log or "action=tag" in log
    [received] = smtp_sink.wait_for(1, timeout=30)
    head = received.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "ATTACH_SANDBOX_MALICIOUS" not in head and "X-Mailward-Verdict: " in head
    assert "delivered to <user@example.com>" in gateway.wait_log("delivered to <user@example.com>")


def test_sandbox_that_never_answers_leads_to_the_time_out_action(gateway_factory, smtp_sink):
    cape = CapeServer(finish_after=0)
    try:
        gateway = gateway_factory(config={"sandbox": {
            "backends": ["cape"], "cape_url": cape.url, "cape_poll": "1s",
            "deadline": "4s"}}, relay=smtp_sink.url)
        raw = samples.message([("menu.html", "text/html", samples.CLEAN_PAGE)])
        queue_id = gateway.send(raw).rsplit(" ", 1)[-1]
        gateway.wait_log(f"{queue_id}: held for the sandbox")
        log = gateway.wait_log(f"{queue_id}: hold resolved (sandbox time-out)", timeout=30)
        assert "action=quarantine" in log
        [item] = quarantine(gateway, gateway.token())
        assert item["reason"].startswith("sandbox time-out")
        assert cape.polls >= 1 and smtp_sink.messages == []
    finally:
        cape.stop()


def test_held_message_survives_a_restart(gateway_factory, smtp_sink):
    cape = CapeServer(finish_after=0)
    try:
        config = {"sandbox": {"backends": ["cape"], "cape_url": cape.url, "cape_poll": "1s",
                              "deadline": "60s"}}
        gateway = gateway_factory(config=config, relay=smtp_sink.url)
        raw = samples.message([("menu.html", "text/html", samples.CLEAN_PAGE)])
        queue_id = gateway.send(raw).rsplit(" ", 1)[-1]
        gateway.wait_log(f"{queue_id}: held for the sandbox")
        gateway.kill()
        cape.finish_after = cape.polls + 2
        cape.malscore = 1.0
        gateway.start()
        log = gateway.wait_log(f"{queue_id}: hold resolved (sandbox verdict)", timeout=90)
        assert "action=quarantine" not in log
        [received] = smtp_sink.wait_for(1, timeout=30)
        assert b"X-Mailward-Queue-Id: " + queue_id.encode() in received.data
    finally:
        cape.stop()
