"""End to end: SMTP delivery into Dovecot and the Maildir store, a click, new
intelligence, copies pulled on the real IMAP server, an incident, a signed
webhook alert; a campaign without clicks is contained; a SHA-256 indicator
pulls an attachment; restore puts the copy back in INBOX."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from mailward.trap.notify import verify_signature
from tests.conftest import need
from tests.support import dovecot as dc
from tests.support.dnsserver import free_port

LINKS = re.compile(rb'https?://127\.0\.0\.1:\d+/u/[^"\s<>]+(?<![.,])')
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
SECRET = "webhook-test-secret"
USERS = ["alice@example.com", "bob@example.com", "carol@example.com"]


def message(subject: str, url: str, message_id: str, extra: bytes = b"") -> bytes:
    body = (f"Dear colleague,\r\n\r\nyour mailbox is almost full. Please sign in at {url} "
            f"within 24 hours so that your messages are kept. Regards, the IT desk.\r\n")
    if not extra:
        return (f"From: IT Desk <desk@phish-sender.example>\r\nTo: staff@example.com\r\n"
                f"Subject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n{body}").encode()
    return (f"From: Billing <billing@other-sender.example>\r\nTo: staff@example.com\r\n"
            f"Subject: {subject}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n"
            f"Content-Type: text/plain\r\n\r\n{body}\r\n--m\r\n"
            f"Content-Type: application/octet-stream; name=\"invoice.dat\"\r\n"
            f"Content-Disposition: attachment; filename=\"invoice.dat\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + extra + b"\r\n--m--\r\n"


class Receiver:
    """A SOC's webhook endpoint: keeps each POST's headers and body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.posts: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                receiver.posts.append((dict(self.headers), self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def alerts(self) -> list[dict]:
        return [json.loads(body) for _, body in self.posts]

    def wait(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in list(self.posts):
                alert = json.loads(body)
                if predicate(alert):
                    return {"headers": headers, "body": body, "alert": alert}
            time.sleep(0.2)
        raise AssertionError(f"no such alert; got {[a.get('title') for a in self.alerts()]}")


@pytest.fixture
def receiver():
    instance = Receiver()
    yield instance
    instance.server.shutdown()


@pytest.fixture
def dovecot():
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    server = dc.Dovecot(USERS).start()
    bridge = dc.LmtpBridge(server).start()
    yield server, bridge
    bridge.stop()
    server.stop()


def trap_config(receiver: Receiver, **extra) -> dict:
    config = {"urls": {"scanner_window": "0s"},
              "alerts": {"webhook_urls": [receiver.url], "webhook_secret": SECRET},
              "trap": {"pull_backoff": "0.2s", "max_share_min_copies": 50}}
    for section, values in extra.items():
        config.setdefault(section, {}).update(values)
    return config


def files(directory) -> list:
    return sorted(p for sub in ("new", "cur") if (directory / sub).is_dir()
                  for p in (directory / sub).iterdir())


def wait_files(directory, count: int, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = files(directory)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{directory}: {len(files(directory))} messages, wanted {count}")


def api(gateway, token: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{gateway.web_url}{path}", timeout=30,
                         headers={"Authorization": f"Bearer {token}"}, **kwargs)


def wait_incident(gateway, token: str, predicate, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        seen = api(gateway, token, "GET", "/api/v1/trap/incidents").json()
        for item in seen:
            if predicate(item):
                return api(gateway, token, "GET", f"/api/v1/trap/incidents/{item['id']}").json()
        time.sleep(0.3)
    raise AssertionError(f"no such incident: {seen}\n{gateway.log()[-3000:]}")


def wait_clicks(gateway, token: str, queue_id: str, count: int) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        answer = api(gateway, token, "GET", "/api/v1/url/clicks", params={"queue_id": queue_id})
        if len(answer.json()["items"]) >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the click was not logged")


def test_a_clicked_phish_is_pulled_from_imap_and_reported_compromised(
        gateway_factory, dovecot, receiver):
    server, bridge = dovecot
    config = trap_config(receiver, trap={"remote_mailbox": "imap"},
                         imap={"host": "127.0.0.1", "port": server.imap_port,
                               "security": "none", "admin_user": dc.MASTER_USER,
                               "admin_password": dc.MASTER_PASSWORD})
    gateway = gateway_factory(relay=bridge.url, config=config)
    token = gateway.token()
    bad = "https://login.phish-kit.example/owa/signin"
    reply = gateway.send(message("Mailbox full", bad, "full@phish-sender.example"),
                         rcpts=["alice@example.com", "bob@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    alice = server.maildir("alice@example.com")
    bob = server.maildir("bob@example.com")
    [alice_copy] = wait_files(alice, 1)
    original = alice_copy.read_bytes()
    wait_files(bob, 1)

    # Alice clicks her rewritten link; only then does the URL turn out bad.
    link = LINKS.findall(original)[0].decode().replace("&amp;", "&")
    answer = httpx.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert answer.status_code == 302 and answer.headers["location"] == bad
    wait_clicks(gateway, token, queue_id, 1)
    gateway.cli("intel", "add", "--type", "url", bad, "--source", "feed-x")

    incident = wait_incident(gateway, token, lambda i: i["indicator"]["value"] == bad
                             and i["summary"].get("pulled") == 2)
    assert incident["assessment"] == "compromise suspected"
    [clicked] = incident["summary"]["human_clicks_before_pull"]
    assert clicked["recipient"] == "alice@example.com" and clicked["human"]
    assert {c["recipient"]: c["pull"] for c in incident["copies"]} == {
        "alice@example.com": "pulled", "bob@example.com": "pulled"}
    # The copies moved from INBOX to Quarantine on the IMAP server itself.
    assert files(alice) == [] and files(bob) == []
    assert len(files(alice / ".Quarantine")) == 1 and len(files(bob / ".Quarantine")) == 1

    # The SOC's webhook got the signed alert naming who clicked.
    got = receiver.wait(lambda a: a.get("assessment") == "compromise suspected")
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert verify_signature(SECRET.encode(), headers["x-mailward-timestamp"], got["body"],
                            headers["x-mailward-signature"])
    assert not verify_signature(b"wrong", headers["x-mailward-timestamp"], got["body"],
                                headers["x-mailward-signature"])
    assert "alice@example.com at" in got["alert"]["text"]

    # A second scan pulls nothing twice.
    again = json.loads(gateway.cli("trap", "run", "--all", "--json").stdout)
    assert again["pulled"] == 0

    # Restore: back in INBOX, as itself (the same message, not a forward).
    out = gateway.cli("restore", "<full@phish-sender.example>").stdout.decode()
    assert out.count("restored") == 2
    [back] = files(alice)
    assert back.read_bytes() == original
    assert files(alice / ".Quarantine") == []

    # The analyst works the incident through to closed, with a note.
    answer = api(gateway, token, "POST", f"/api/v1/trap/incidents/{incident['id']}/status",
                 json={"status": "closed"})
    assert answer.status_code == 422 and "note" in answer.json()["detail"]
    assert api(gateway, token, "POST", f"/api/v1/trap/incidents/{incident['id']}/status",
               json={"status": "investigating"}).status_code == 200
    gateway.cli("incident", "close", str(incident["id"]), "--note", "password reset for alice")
    shown = gateway.cli("incident", "show", str(incident["id"])).stdout.decode()
    assert "status closed" in shown and "password reset for alice" in shown
    assert httpx.post(f"{gateway.web_url}/api/v1/trap/incidents/{incident['id']}/status",
                      json={"status": "open"}).status_code == 401


def test_maildir_campaign_without_clicks_is_contained_and_a_hash_pulls_an_attachment(
        gateway_factory, receiver):
    gateway = gateway_factory(config=trap_config(receiver))
    token = gateway.token()
    bad = "https://billing.second-wave.example/pay"
    payload = b"Invoice 2026-0042, total 1234.00 EUR, due in 30 days.\n" * 20
    digest = hashlib.sha256(payload).hexdigest()
    import base64

    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    reply = gateway.send(message("Invoice", bad, "inv@other-sender.example"),
                         rcpts=["carol@example.com", "dave@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    gateway.send(message("Invoice attached", "https://shop.example.org/",
                         "att@other-sender.example", extra=encoded),
                 rcpts=["erin@example.com"])
    root = gateway.data_dir / "mailboxes" / "example.com"
    for user in ("carol", "dave", "erin"):
        wait_files(root / user, 1)

    gateway.cli("intel", "add", "--type", "url", bad, "--source", "feed-y")
    incident = wait_incident(gateway, token, lambda i: i["indicator"]["value"] == bad
                             and i["summary"].get("pulled") == 2)
    assert incident["assessment"] == "contained"
    assert incident["summary"]["human_clicks_before_pull"] == []
    assert files(root / "carol") == [] and len(files(root / "carol" / ".Quarantine")) == 1
    receiver.wait(lambda a: a.get("assessment") == "contained"
                  and a["incident"]["indicator"]["value"] == bad)

    # A new SHA-256 indicator, this time by the REST API, pulls the copy that
    # carried the attachment; a malformed one is refused with the reason.
    bad_input = api(gateway, token, "POST", "/api/v1/trap/indicators",
                    json={"indicators": [{"type": "sha256", "value": "12ab"}]})
    assert bad_input.status_code == 422 and "not a SHA-256" in bad_input.json()["detail"]
    added = api(gateway, token, "POST", "/api/v1/trap/indicators",
                json={"indicators": [{"type": "sha256", "value": digest,
                                      "source": "sandbox-feed"}]})
    assert added.status_code == 200 and added.json()["added"] == 1
    assert httpx.post(f"{gateway.web_url}/api/v1/trap/indicators",
                      json={"indicators": []}).status_code == 401
    wait_incident(gateway, token, lambda i: i["indicator"]["value"] == digest
                  and i["summary"].get("pulled") == 1)
    assert files(root / "erin") == [] and len(files(root / "erin" / ".Quarantine")) == 1

    # Dashboards and the trace show it.
    panel = api(gateway, token, "GET", "/api/v1/stats/panels/threats").json()
    campaign = next(c for c in panel["campaigns"] if c["delivered"] == 2)
    assert campaign["pulled"] == 2 and campaign["click_rate"] == 0.0
    assert api(gateway, token, "GET", "/api/v1/stats/panels/incidents").json()["total"] == 2
    missing = api(gateway, token, "POST", "/api/v1/trap/retract",
                  json={"message": "<nothing@example.org>"})
    assert missing.status_code == 404 and "no delivered copy" in missing.json()["detail"]
    trace = api(gateway, token, "GET", f"/api/v1/trace/{queue_id}").json()
    [section] = [s for s in trace["sections"] if s["title"] == "Retractions"]
    assert sorted((r["recipient"], r["status"]) for r in section["rows"]) == [
        ("carol@example.com", "pulled"), ("dave@example.com", "pulled")]
