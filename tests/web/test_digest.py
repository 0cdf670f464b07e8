"""Quarantine digests: sent through the relay, only with news; links work once."""

from __future__ import annotations

import email
import email.policy
import re
import time

import httpx

from tests.web.conftest import start_console
from tests.web.support import Console, add_user, api_user, corpus_spam, phish, queue_id

LINK = re.compile(r"(Release|Request release|Allow sender|Block sender): (http://\S+)")


def digests_to(sink, address: str) -> list[email.message.EmailMessage]:
    found = []
    for received in sink.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        if str(message.get("Subject", "")).startswith("Quarantine digest") and \
                received.rcpt_tos == [address]:
            found.append(message)
    return found


def wait_digest(sink, address: str, count: int = 1) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = digests_to(sink, address)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no digest for {address}")


def links(message: email.message.EmailMessage) -> list[tuple[str, str]]:
    return LINK.findall(message.get_content())


def wait_released(sink, qid: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(f"X-Mailward-Queue-Id: {qid}".encode() in m.data for m in sink.messages):
            return
        time.sleep(0.1)
    raise AssertionError(f"{qid} did not reach the relay")


def test_digest_links_act_once_and_tampered_ones_are_refused(console, sink, as_user):
    add_user(console, "gina", "user", "gina@example.com", digest="1")
    api_user(console, "hank", "user", "hank@example.com", digest="1")
    spam_qid = queue_id(console.send(corpus_spam(8), rcpts=["gina@example.com"]))
    phish_qid = queue_id(console.send(phish("gina phish", "gina@example.com"),
                                      rcpts=["gina@example.com"]))
    admin = as_user("admin")
    assert as_user("gina").post("/api/v1/digest/run").status_code == 403
    assert admin.post("/api/v1/digest/run").json()["sent"] >= 1
    [digest] = wait_digest(sink, "gina@example.com")
    assert digest["Auto-Submitted"] == "auto-generated"
    body = digest.get_content()
    assert "[spam]" in body and "[phish]" in body
    found = links(digest)
    labels = [label for label, _ in found]
    assert labels.count("Release") == 1 and labels.count("Request release") == 1
    assert labels.count("Allow sender") == 2 and labels.count("Block sender") == 2
    # Hank has nothing new: no digest for him.
    assert digests_to(sink, "hank@example.com") == []

    spam_item = admin.item_of(spam_qid)
    release = next(url for label, url in found if label == "Release")
    opened = httpx.get(release)
    assert opened.status_code == 200 and 'id="confirm"' in opened.text
    assert admin.item_of(spam_qid)["status"] == "held"  # opening a link does nothing

    tampered = release[:-3] + ("AAA" if not release.endswith("AAA") else "BBB")
    assert httpx.post(tampered).status_code == 410
    assert httpx.post(release.rsplit(".", 1)[0] + ".").status_code == 410
    done = httpx.post(release)
    assert done.status_code == 200 and 'id="link-done"' in done.text
    wait_released(sink, spam_qid)
    assert admin.item_of(spam_qid)["released_by"] == "digest:gina"
    again = httpx.post(release)
    assert again.status_code == 410 and "already used" in again.text
    refused = admin.get("/api/v1/audit", params={"action": "digest.redeem",
                                                 "outcome": "refused"}).json()["items"]
    assert len(refused) >= 2

    request = next(url for label, url in found if label == "Request release")
    assert httpx.post(request).status_code == 200
    assert admin.item_of(phish_qid)["status"] == "held"
    pending = admin.get("/api/v1/quarantine/requests").json()["items"]
    assert any(r["user"] == "gina" and r["item"]["queue_id"] == phish_qid for r in pending)
    # Not due again within the hour, and nothing new for Hank: nothing is sent.
    assert admin.post("/api/v1/digest/run").json()["sent"] == 0


def test_digest_links_expire(tmp_path, sink):
    gateway = start_console(tmp_path / "short", sink, digest_link_lifetime="2s")
    try:
        api_user(gateway, "ivan", "user", "ivan@example.com", digest="daily")
        gateway.send(corpus_spam(9), rcpts=["ivan@example.com"])
        admin = Console(gateway)
        admin.login("admin")
        assert admin.post("/api/v1/digest/run").json()["sent"] == 1
        [digest] = wait_digest(sink, "ivan@example.com")
        block = next(url for label, url in links(digest) if label == "Block sender")
        time.sleep(2.5)
        expired = httpx.get(block)
        assert expired.status_code == 410 and "expired" in expired.text
        assert httpx.post(block).status_code == 410
        assert admin.get("/api/v1/senders").json()["items"] == []
        admin.close()
    finally:
        gateway.stop()
