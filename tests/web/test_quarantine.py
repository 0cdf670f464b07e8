"""Quarantine review over the REST API: who sees what, who may do what."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.web.support import corpus_spam, phish, queue_id


@pytest.fixture(scope="module")
def held(console):
    """held - quarantined messages: spam and phishing for alice, spam for bob, and shared."""
    sent = {
        "alice_spam": console.send(corpus_spam(1), rcpts=["alice@example.com"]),
        "alice_spam2": console.send(corpus_spam(2), rcpts=["a.smith@example.com"]),
        "alice_spam3": console.send(corpus_spam(12), rcpts=["alice@example.com"]),
        "alice_phish": console.send(phish("alice phish"), rcpts=["alice@example.com"]),
        "bob_spam": console.send(corpus_spam(4), rcpts=["bob@example.com"]),
        "shared": console.send(corpus_spam(5), rcpts=["alice@example.com",
                                                      "bob@example.com"]),
    }
    return {name: queue_id(reply) for name, reply in sent.items()}


def test_staff_see_everything_users_only_their_own(held, as_user):
    admin = as_user("admin")
    everything = {i["queue_id"] for i in admin.get("/api/v1/quarantine",
                                                   params={"limit": 500}).json()["items"]}
    assert set(held.values()) <= everything
    alice = as_user("alice")
    mine = {i["queue_id"] for i in alice.get("/api/v1/quarantine").json()["items"]}
    assert mine == {held["alice_spam"], held["alice_spam2"], held["alice_spam3"],
                    held["alice_phish"], held["shared"]}
    bob = as_user("bob")
    assert {i["queue_id"] for i in bob.get("/api/v1/quarantine").json()["items"]} == {
        held["bob_spam"], held["shared"]}


def test_categories_and_filters(held, as_user):
    admin = as_user("admin")
    phish_only = admin.get("/api/v1/quarantine", params={"category": "phish"}).json()
    assert {i["queue_id"] for i in phish_only["items"]} == {held["alice_phish"]}
    by_recipient = admin.get("/api/v1/quarantine", params={"recipient": "bob@"}).json()
    assert {i["queue_id"] for i in by_recipient["items"]} == {held["bob_spam"], held["shared"]}
    by_sender = admin.get("/api/v1/quarantine", params={"sender": "phish.example.org"}).json()
    assert by_sender["total"] == 1
    future = admin.get("/api/v1/quarantine", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["total"] == 0
    assert admin.get("/api/v1/quarantine", params={"category": "bogus"}).status_code == 422


def test_huge_pages_and_offsets_are_refused(held, as_user):
    admin = as_user("admin")
    assert admin.get("/api/v1/quarantine", params={"limit": 100000}).status_code == 422
    assert admin.get("/api/v1/quarantine", params={"offset": 10**12}).status_code == 422
    page = admin.get("/api/v1/quarantine", params={"limit": 2, "offset": 1}).json()
    assert len(page["items"]) == 2 and page["total"] >= 6


def test_sql_injection_in_filters_is_only_text(held, as_user):
    admin = as_user("admin")
    for evil in ("' OR 1=1 --", "%", "_", "\\", "\" OR \"\"=\"", "'; DROP TABLE quarantine;--"):
        answer = admin.get("/api/v1/quarantine", params={"sender": evil, "recipient": evil})
        assert answer.status_code == 200 and answer.json()["total"] == 0, evil
    assert admin.get("/api/v1/quarantine").json()["total"] >= 6


def test_another_users_message_answers_404_like_an_unknown_id(held, as_user):
    bob = as_user("bob")
    alice_item = as_user("admin").item_of(held["alice_spam"])
    for path in (f"/api/v1/quarantine/{alice_item['id']}", "/api/v1/quarantine/nosuchid"):
        assert bob.get(path).status_code == 404
    assert bob.post(f"/api/v1/quarantine/{alice_item['id']}/release").status_code == 404
    assert bob.delete(f"/api/v1/quarantine/{alice_item['id']}").status_code == 404
    audit = as_user("admin").get("/api/v1/audit", params={"target": alice_item["id"],
                                                          "outcome": "refused"}).json()
    assert any(e["actor"] == "user:bob" for e in audit["items"])


def test_message_view_has_verdict_headers_text_and_no_html(held, as_user):
    alice = as_user("alice")
    item = alice.item_of(held["alice_phish"])
    view = alice.get(f"/api/v1/quarantine/{item['id']}").json()
    assert view["category"] == "phish"
    symbols = {f["symbol"] for f in view["verdict"]["findings"]}
    assert "URL_BLOCKLISTED" in symbols
    assert all(f["detail"] for f in view["verdict"]["findings"] if f["score"])
    assert {"name": "Subject", "value": "alice phish"} in view["headers"]
    assert "https://login.bad.example.net/verify" in view["body_text"]


def test_user_releases_own_spam_which_reaches_the_relay(held, as_user, sink):
    alice = as_user("alice")
    item = alice.item_of(held["alice_spam"])
    answer = alice.post(f"/api/v1/quarantine/{item['id']}/release")
    assert answer.status_code == 200 and answer.json()["status"] == "released"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = [m for m in sink.messages if f"X-Mailward-Queue-Id: {held['alice_spam']}".encode()
               in m.data]
        if got:
            break
        time.sleep(0.1)
    assert got and got[0].rcpt_tos == ["alice@example.com"]
    assert b"X-Mailward-Released: by user:alice" in got[0].data
    assert alice.post(f"/api/v1/quarantine/{item['id']}/release").status_code == 409


def test_user_may_only_request_release_of_phishing_and_admin_approves(held, as_user, sink):
    alice = as_user("alice")
    item = alice.item_of(held["alice_phish"])
    refused = alice.post(f"/api/v1/quarantine/{item['id']}/release")
    assert refused.status_code == 403 and "request" in refused.json()["detail"]
    asked = alice.post(f"/api/v1/quarantine/{item['id']}/request-release",
                       json={"comment": "I expected this <b>mail</b>"})
    assert asked.status_code == 200 and asked.json()["status"] == "pending"
    assert alice.post("/api/v1/quarantine/requests/1/approve").status_code == 403
    admin = as_user("admin")
    [pending] = [r for r in admin.get("/api/v1/quarantine/requests").json()["items"]
                 if r["quarantine_id"] == item["id"]]
    assert pending["user"] == "alice" and pending["comment"] == "I expected this <b>mail</b>"
    approved = admin.post(f"/api/v1/quarantine/requests/{pending['id']}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["user"] == "alice"
    assert admin.item_of(held["alice_phish"])["status"] == "released"
    sink.wait_for(1)
    assert admin.post(f"/api/v1/quarantine/requests/{pending['id']}/deny").status_code == 404


def test_user_cannot_act_alone_on_mail_shared_with_others(held, as_user):
    alice = as_user("alice")
    item = alice.item_of(held["shared"])
    answer = alice.post(f"/api/v1/quarantine/{item['id']}/release")
    assert answer.status_code == 403 and "others" in answer.json()["detail"]
    assert alice.delete(f"/api/v1/quarantine/{item['id']}").status_code == 403


def test_not_spam_releases_and_keeps_a_training_copy(console, held, as_user):
    alice = as_user("alice")
    item = alice.item_of(held["alice_spam2"])
    answer = alice.post(f"/api/v1/quarantine/{item['id']}/not-spam")
    assert answer.status_code == 200 and answer.json()["status"] == "released"
    kept = console.data_dir / "feedback" / "ham" / f"{held['alice_spam2']}.eml"
    assert kept.read_bytes().endswith(corpus_spam(2))
    # The release taught the site's spam model at once: the message now reads as ham.
    from mailward.content.features import spam_tokens
    from mailward.content.model import LinearModel
    from mailward.content.spam import bundled_model, content_findings
    from mailward.message import Message

    learnt = LinearModel.load(console.data_dir / "spam-model.npz")
    message = Message(kept.read_bytes())
    tokens = spam_tokens(message, content_findings(message))
    assert learnt.probability(tokens) < 0.5 < bundled_model().probability(tokens)
    assert len(list((console.data_dir / "spam-learn").glob("*.npz"))) == 1


def test_block_sender_refuses_the_next_message_from_it(console, held, as_user):
    admin = as_user("admin")
    item = admin.item_of(held["bob_spam"])
    answer = admin.post(f"/api/v1/quarantine/{item['id']}/block-sender")
    assert answer.status_code == 200 and answer.json()["recipients"] == ["*"]
    rules = admin.get("/api/v1/senders").json()["items"]
    assert any(r["kind"] == "block" and r["sender"] == item["sender"].lower() for r in rules)
    time.sleep(2.5)  # the check's cache of rules lives two seconds
    with pytest.raises(smtplib.SMTPDataError) as refused:
        console.send(corpus_spam(4), rcpts=["bob@example.com"])
    assert refused.value.smtp_code == 550


def test_user_allow_sender_delivers_the_next_message_to_them(console, held, as_user, sink):
    alice = as_user("alice")
    item = alice.item_of(held["alice_spam3"])
    answer = alice.post(f"/api/v1/quarantine/{item['id']}/release",
                        json={"allow_sender": True})
    assert answer.status_code == 200
    rules = as_user("admin").get("/api/v1/senders").json()["items"]
    assert any(r["kind"] == "allow" and r["recipient"] == "alice@example.com" for r in rules)
    time.sleep(2.5)
    reply = console.send(corpus_spam(12), rcpts=["alice@example.com"])
    qid = queue_id(reply)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            f"X-Mailward-Queue-Id: {qid}".encode() in m.data for m in sink.messages):
        time.sleep(0.1)
    trace = as_user("admin").get(f"/api/v1/trace/{qid}").json()
    assert trace["message"]["action"] == "deliver"
    assert "allow list" in trace["message"]["reason"]
    assert "SENDER_RULE_ALLOW" in {f["symbol"] for f in trace["findings"]}


def test_bulk_actions_report_each_item(console, as_user):
    replies = [console.send(corpus_spam(n), rcpts=["bob@example.com"]) for n in (6, 7)]
    bob = as_user("bob")
    ids = [bob.item_of(queue_id(r))["id"] for r in replies]
    answer = bob.post("/api/v1/quarantine/bulk", json={"action": "delete",
                                                       "ids": ids + ["nosuchid"]})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[2]["status"] == 404
    assert bob.post("/api/v1/quarantine/bulk", json={"action": "explode", "ids": ids}
                    ).status_code == 422
    assert bob.post("/api/v1/quarantine/bulk", json={"action": "delete", "ids": []}
                    ).status_code == 422


def test_analyst_reviews_but_manages_no_users(held, as_user):
    analyst = as_user("analyst")
    item = analyst.item_of(held["bob_spam"])
    assert analyst.get(f"/api/v1/quarantine/{item['id']}").status_code == 200
    assert analyst.get("/api/v1/audit").status_code == 200
    assert analyst.get("/api/v1/tokens").status_code == 403


def test_allow_sender_endpoint_and_sender_rules_api(held, as_user):
    admin = as_user("admin")
    item = admin.item_of(held["shared"])
    answer = admin.post(f"/api/v1/quarantine/{item['id']}/allow-sender")
    assert answer.status_code == 200 and answer.json()["kind"] == "allow"
    bob = as_user("bob")
    assert bob.get("/api/v1/senders").status_code == 403
    assert bob.post("/api/v1/senders", json={"kind": "allow", "sender": "@x.example"}
                    ).status_code == 403
    made = admin.post("/api/v1/senders", json={"kind": "allow", "sender": "@partner.example"})
    assert made.status_code == 201 and made.json()["recipient"] == "*"
    assert admin.post("/api/v1/senders", json={"kind": "allow", "sender": "not an address"}
                      ).status_code == 422
    assert admin.post("/api/v1/senders", json={"kind": "maybe", "sender": "@p.example"}
                      ).status_code == 422
    assert bob.delete(f"/api/v1/senders/{made.json()['id']}").status_code == 403
    assert admin.delete(f"/api/v1/senders/{made.json()['id']}").status_code == 200
    assert admin.delete(f"/api/v1/senders/{made.json()['id']}").status_code == 404


def test_deny_a_release_request(console, as_user):
    qid = queue_id(console.send(phish("bob phish", "bob@example.com"),
                                rcpts=["bob@example.com"]))
    bob = as_user("bob")
    item = bob.item_of(qid)
    assert bob.post(f"/api/v1/quarantine/{item['id']}/request-release").status_code == 200
    [mine] = bob.get("/api/v1/quarantine/requests").json()["items"]
    assert mine["quarantine_id"] == item["id"]
    assert bob.post(f"/api/v1/quarantine/requests/{mine['id']}/deny").status_code == 403
    analyst = as_user("analyst")
    denied = analyst.post(f"/api/v1/quarantine/requests/{mine['id']}/deny")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert denied.json()["user"] == "bob"
    assert bob.item_of(qid)["status"] == "held"
    assert bob.get("/api/v1/quarantine/requests").json()["items"] == []


def test_account_and_admin_routes_refuse_the_wrong_callers(console, as_user):
    unbound = console.cli("token", "create", "automation").stdout.decode().strip()
    robot = as_user(token=unbound)
    assert robot.get("/api/v1/account").status_code == 404
    assert robot.get("/api/v1/users").status_code == 200
    analyst = as_user("analyst")
    assert analyst.patch("/api/v1/users/1", json={"role": "user"}).status_code == 403
    assert analyst.post("/api/v1/tokens", json={"name": "x"}).status_code == 403
    assert analyst.delete("/api/v1/tokens/1").status_code == 403
    assert as_user("bob").get("/api/v1/audit").status_code == 403
    assert as_user("bob").post("/api/v1/digest/run").status_code == 403
    assert robot.post("/api/v1/tokens", json={"name": "x", "user_id": 99999}
                      ).status_code == 422
    nobody = as_user()
    for method, path in (("GET", "/api/v1/stats/symbols"), ("GET", "/api/v1/stats/dmarc"),
                         ("GET", "/api/v1/account"), ("POST", "/api/v1/auth/logout"),
                         ("GET", "/api/v1/quarantine/requests"),
                         ("POST", "/api/v1/digest/run"), ("GET", "/api/v1/senders")):
        assert nobody.http.request(method, path).status_code == 401, path


def test_console_pages_answer_for_each_role(held, as_user):
    pages = ("/console/quarantine", "/console/requests", "/console/trace",
             "/console/dashboard", "/console/panels/incidents", "/console/admin/users",
             "/console/admin/audit", "/console/admin/senders", "/console/account")
    expected = {"admin": {p: 200 for p in pages},
                "analyst": {**{p: 200 for p in pages}, "/console/admin/users": 403},
                "bob": {**{p: 403 for p in pages}, "/console/quarantine": 200,
                        "/console/requests": 200, "/console/account": 200}}
    for name, codes in expected.items():
        client = as_user(name)
        for page, code in codes.items():
            assert client.get(page).status_code == code, (name, page)
    page = as_user("admin").get("/console/quarantine", params={"sender": "<b>x</b>"})
    assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text


def test_a_broken_encoded_word_is_shown_as_written(console, as_user):
    # An encoded word that does not decode is the sender's bytes, not a server error.
    raw = phish("=?utf-8?B?abcdefghi?=").replace(
        b"From: IT desk", b"From: =?x-unknown?Q?=ZZ?= IT desk")
    qid = queue_id(console.send(raw, rcpts=["alice@example.com"]))
    admin = as_user("admin")
    item = admin.item_of(qid)
    view = admin.get(f"/api/v1/quarantine/{item['id']}")
    assert view.status_code == 200, view.text
    assert {"name": "Subject", "value": "=?utf-8?B?abcdefghi?="} in view.json()["headers"]
    page = admin.get(f"/console/quarantine/{item['id']}")
    assert page.status_code == 200 and "abcdefghi" in page.text


def test_a_request_closes_when_its_message_leaves_the_quarantine(console, as_user):
    alice, admin = as_user("alice"), as_user("admin")
    items = [alice.item_of(queue_id(console.send(phish(f"alice phish {n}"),
                                                 rcpts=["alice@example.com"])))
             for n in (1, 2)]
    asked = [alice.post(f"/api/v1/quarantine/{item['id']}/request-release") for item in items]
    assert [a.status_code for a in asked] == [200, 200]
    assert [a.json()["user"] for a in asked] == ["alice", "alice"]
    assert [a.json()["status"] for a in asked] == ["pending", "pending"]

    # One deleted, the other released by staff without deciding the request.
    assert admin.delete(f"/api/v1/quarantine/{items[0]['id']}").status_code == 200
    assert admin.post(f"/api/v1/quarantine/{items[1]['id']}/release").status_code == 200
    queue = {r["quarantine_id"] for r in admin.get("/api/v1/quarantine/requests").json()["items"]}
    assert not queue & {item["id"] for item in items}
    assert alice.get("/api/v1/quarantine/requests").json()["items"] == []
    for item, how in zip(items, ("deleted", "released")):
        [request] = admin.get(f"/api/v1/quarantine/{item['id']}").json()["release_requests"]
        assert request["status"] == "closed" and request["user"] == "alice"
        assert request["reason"] == f"{how} by user:admin"
        page = admin.get(f"/console/quarantine/{item['id']}")
        assert page.status_code == 200 and f"closed: {how} by user:admin" in page.text
    for answer in asked:
        late = admin.post(f"/api/v1/quarantine/requests/{answer.json()['id']}/approve")
        assert late.status_code == 404 and "no pending release request" in late.text
