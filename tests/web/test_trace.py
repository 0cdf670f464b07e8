"""Message trace and dashboards over the REST API, and /metrics."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.web.support import phish, queue_id

HOSTILE_SUBJECT = "<script>alert(1)</script> ' OR 1=1 -- \u202efdp.exe"


@pytest.fixture(scope="module")
def mail(console, sink):
    """mail - one delivered, one quarantined (phish) and one hostile-header message."""
    ham = (b"From: Dana <dana@partner.example.org>\r\nTo: bob@example.com\r\n"
           b"Subject: lunch on friday\r\nMessage-ID: <lunch-42@partner.example.org>\r\n\r\n"
           b"Shall we meet at noon?\r\n")
    hostile = (f"From: x@hostile.example\r\nTo: bob@example.com\r\nSubject: {HOSTILE_SUBJECT}"
               f"\r\nMessage-ID: <\"><img src=x>@hostile.example>\r\n\r\nhello\r\n"
               ).encode("utf-8")
    sent = {"ham": queue_id(console.send(ham, rcpts=["bob@example.com"])),
            "phish": queue_id(console.send(phish("trace phish"), rcpts=["alice@example.com"])),
            "hostile": queue_id(console.send(hostile, rcpts=["bob@example.com"]))}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            f"X-Mailward-Queue-Id: {sent['ham']}".encode() in m.data for m in sink.messages):
        time.sleep(0.1)
    return sent


def test_search_by_each_field(mail, as_user):
    analyst = as_user("analyst")

    def found(**params) -> set[str]:
        answer = analyst.get("/api/v1/trace", params=params)
        assert answer.status_code == 200, answer.text
        return {row["queue_id"] for row in answer.json()["items"]}

    assert mail["ham"] in found(sender="dana@partner")
    assert mail["ham"] in found(recipient="bob@example.com")
    assert found(subject="LUNCH on") == {mail["ham"]}
    assert found(message_id="lunch-42@partner.example.org") == {mail["ham"]}
    assert found(queue_id=mail["phish"]) == {mail["phish"]}
    assert mail["ham"] in found(peer_ip="127.0.0.1")
    assert mail["phish"] in found(action="quarantine")
    assert mail["ham"] not in found(action="quarantine")
    assert mail["phish"] in found(category="phish")
    assert not found(since="2999-01-01T00:00:00Z")
    assert analyst.get("/api/v1/trace", params={"action": "explode"}).status_code == 422


def test_injection_in_search_fields_is_only_text(mail, as_user):
    analyst = as_user("analyst")
    for evil in ("' OR 1=1 --", "%", "_%_", "\\\\", "'); DELETE FROM messages; --"):
        for field in ("sender", "recipient", "subject", "message_id", "queue_id", "peer_ip"):
            answer = analyst.get("/api/v1/trace", params={field: evil})
            assert answer.status_code == 200, (field, evil)
            # Matched as text: only the message whose subject holds it literally.
            literal = field == "subject" and evil == "' OR 1=1 --"
            expected = {mail["hostile"]} if literal else set()
            assert {r["queue_id"] for r in answer.json()["items"]} == expected, (field, evil)
    assert analyst.get("/api/v1/trace").json()["total"] >= 3


def test_trace_page_of_a_delivered_message_has_the_whole_decision(mail, as_user):
    trace = as_user("analyst").get(f"/api/v1/trace/{mail['ham']}").json()
    assert trace["message"]["action"] == "deliver"
    assert trace["message"]["reason"]
    [delivery] = trace["deliveries"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 1
    assert delivery["route"] == "inbound"
    [copy] = trace["copies"]
    assert copy["recipient"] == "bob@example.com" and copy["state"] == "delivered"
    assert trace["clicks"] == [] and trace["quarantine"] == []


def test_trace_of_a_quarantined_message_shows_findings_and_quarantine(mail, as_user):
    trace = as_user("admin").get(f"/api/v1/trace/{mail['phish']}").json()
    assert trace["message"]["action"] == "quarantine"
    assert "URL_BLOCKLISTED" in {f["symbol"] for f in trace["findings"]}
    assert trace["quarantine"][0]["status"] == "held" and trace["deliveries"] == []


def test_trace_is_for_staff_and_unknown_ids_are_404(mail, as_user):
    assert as_user("alice").get(f"/api/v1/trace/{mail['phish']}").status_code == 403
    assert as_user("alice").get("/api/v1/trace").status_code == 403
    assert as_user("admin").get("/api/v1/trace/nosuchqueueid").status_code == 404
    assert as_user("admin").get("/api/v1/trace", params={"limit": 5000}).status_code == 422


def test_hostile_headers_are_escaped_on_the_trace_page(mail, as_user):
    page = as_user("admin").get(f"/console/trace/{mail['hostile']}")
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "<img src=x>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "\u202e" not in page.text and "&lt;U+202E&gt;fdp.exe" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_hostile_search_values_are_escaped_on_the_search_page(mail, as_user):
    page = as_user("admin").get("/console/trace", params={"subject": "\"><script>x()</script>"})
    assert page.status_code == 200 and "<script>x()" not in page.text
    assert "&#34;&gt;&lt;script&gt;x()&lt;/script&gt;" in page.text


def test_mail_flow_counts_messages_per_action_per_hour(mail, as_user):
    flow = as_user("analyst").get("/api/v1/stats/flow", params={"hours": 6}).json()
    assert len(flow["labels"]) in (6, 7)
    # The hostile-header message may be held as spam too; the lunch note is delivered.
    assert flow["totals"]["deliver"] >= 1 and flow["totals"]["quarantine"] >= 1
    assert sum(flow["series"]["quarantine"]) == flow["totals"]["quarantine"]
    assert as_user("analyst").get("/api/v1/stats/flow", params={"hours": 99999}
                                  ).status_code == 422


def test_top_symbols_and_dmarc_by_domain(mail, as_user):
    analyst = as_user("analyst")
    symbols = analyst.get("/api/v1/stats/symbols").json()
    assert "URL_BLOCKLISTED" in {s["symbol"] for s in symbols["symbols"]}
    dmarc = analyst.get("/api/v1/stats/dmarc", params={"hours": 48})
    assert dmarc.status_code == 200 and dmarc.json()["hours"] == 48


def test_dashboards_of_other_areas_say_when_they_are_missing(mail, as_user):
    analyst = as_user("analyst")
    for name in ("incidents", "threats", "reports"):
        answer = analyst.get(f"/api/v1/stats/panels/{name}")
        assert answer.status_code in (200, 501)
    assert analyst.get("/api/v1/stats/panels/nosuch").status_code == 404
    assert as_user("bob").get("/api/v1/stats/flow").status_code == 403


def test_metrics_need_a_token_with_the_scope(console, mail, as_user):
    assert httpx.get(f"{console.web_url}/metrics").status_code == 401
    token = console.cli("token", "create", "prometheus", "--scope", "metrics:read"
                        ).stdout.decode().strip()
    answer = httpx.get(f"{console.web_url}/metrics",
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'mailward_messages_total{action="deliver"}' in text
    assert 'mailward_queue_depth{status="pending"}' in text
    assert "mailward_quarantine_held " in text
    assert 'mailward_check_seconds_count{check="url_reputation"}' in text or \
        "mailward_check_seconds_count" in text
    assert "mailward_judge_seconds_count" in text
    assert 'mailward_sandbox_backlog{status="queued"}' in text
    reader = console.cli("token", "create", "q", "--scope", "quarantine:read"
                         ).stdout.decode().strip()
    assert httpx.get(f"{console.web_url}/metrics",
                     headers={"Authorization": f"Bearer {reader}"}).status_code == 403


def test_health_needs_no_credentials(console):
    assert httpx.get(f"{console.web_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{console.web_url}/readyz").json() == {"status": "ready"}


def test_openapi_documents_every_console_action(console):
    paths = httpx.get(f"{console.web_url}/openapi.json").json()["paths"]
    for path in ("/api/v1/quarantine", "/api/v1/quarantine/{item_id}/release",
                 "/api/v1/quarantine/{item_id}/not-spam", "/api/v1/quarantine/bulk",
                 "/api/v1/quarantine/{item_id}/block-sender",
                 "/api/v1/quarantine/{item_id}/allow-sender",
                 "/api/v1/quarantine/{item_id}/request-release",
                 "/api/v1/quarantine/requests/{request_id}/approve",
                 "/api/v1/trace", "/api/v1/trace/{queue_id}", "/api/v1/stats/flow",
                 "/api/v1/users", "/api/v1/tokens", "/api/v1/audit", "/api/v1/senders",
                 "/api/v1/account", "/api/v1/digest/run", "/api/v1/auth/login", "/metrics"):
        assert path in paths, path
    assert not any(p.startswith("/console") for p in paths)
