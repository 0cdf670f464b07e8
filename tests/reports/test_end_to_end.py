"""User reports end to end: SMTP in, reports by REST and by the reporting mailbox,
one campaign decided once, every copy moved, outcome emails at the SMTP sink.

Each test runs twice: with the built-in Maildir store, and with the mail in a
real Dovecot (the gateway relays to an MTA that delivers by LMTP; copies are
moved over IMAP by the retract/restore service).
"""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import need
from tests.reports.support import (
    CAMPAIGN_URL,
    LmtpBridge,
    api,
    campaign_message,
    corpus,
    folder_files,
    forward_as_attachment,
    scores_file,
    stats,
    wait_until,
)
from tests.support import dovecot as dc
from tests.support.gateway import SHARED, RunningGateway
from tests.support.sink import SmtpSink

REPORTING = "report-phish@example.com"
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]


class Site:
    """A gateway and where its users' mail lives (the Maildir store or Dovecot)."""

    def __init__(self, gateway: RunningGateway, server, sink: SmtpSink) -> None:
        self.gateway = gateway
        self.server = server
        self.sink = sink

    def files(self, recipient: str, folder: str):
        if self.server is None:
            return folder_files(self.gateway, recipient, folder)
        base = self.server.maildir(recipient)
        directory = base if folder == "INBOX" else base / f".{folder}"
        return sorted(p for sub in ("new", "cur") for p in (directory / sub).glob("*")
                      if p.is_file())

    def moved(self, recipient: str, folder: str) -> bool:
        """moved - the copy is in folder and no longer in the INBOX (Dovecot writes the
        new file of a MOVE before it removes the old one)."""
        return bool(self.files(recipient, folder)) and not self.files(recipient, "INBOX")

    def delivered(self, recipients: list[str]):
        def ready():
            found = {r: self.files(r, "INBOX") for r in recipients}
            return found if all(found.values()) else None

        found = wait_until(ready, what=f"delivery to {recipients}", log=self.gateway.log)
        return {r: max(files, key=lambda p: p.stat().st_mtime) for r, files in found.items()}


@pytest.fixture(scope="module", params=["maildir", "dovecot"])
def site(request, tmp_path_factory):
    """site - a gateway that delivers (no tags) and relies on its users' reports."""
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    directory = tmp_path_factory.mktemp(f"reports-{request.param}")
    sink = SmtpSink().start()
    config = {"smtp": {"accepted_domains": ["example.com"]},
              "policy": {"scores_file": str(scores_file(directory / "scores.toml"))},
              "reports": {"address": REPORTING, "notify_relay": sink.url,
                          "spam_threshold": 8.0, "languages": {"carol@example.com": "de"}},
              # The post-delivery response leaves phishing to the reports here, so
              # that what moves the copies is the reports' own retraction.
              "trap": {"pull_phish": "never"}}
    server = bridge = None
    relay = None
    if request.param == "dovecot":
        need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
        server = dc.Dovecot([f"{p}@example.com" for p in PEOPLE]).start()
        bridge = LmtpBridge(server.lmtp_port).start()
        relay = bridge.url
        config["trap"].update(remote_mailbox="imap", pull_backoff="0.2s")
        config["imap"] = {"host": "127.0.0.1", "port": server.imap_port, "security": "none",
                          "admin_user": dc.MASTER_USER, "admin_password": dc.MASTER_PASSWORD}
    running = RunningGateway(directory, config, relay=relay)
    try:
        running.start()
        yield Site(running, server, sink)
    finally:
        running.stop()
        sink.stop()
        if bridge is not None:
            bridge.stop()
        if server is not None:
            server.stop()


def token_for(gateway: RunningGateway, address: str) -> str:
    return gateway.cli("reports", "token", address).stdout.decode().strip()


def mails_to(sink: SmtpSink, address: str) -> list[bytes]:
    return [m.data for m in sink.messages if address in m.rcpt_tos]


def test_campaign_reported_twice_is_one_malicious_cluster_and_every_copy_is_retracted(
        site):
    gateway, sink = site.gateway, site.sink
    people = ["alice@example.com", "bob@example.com", "carol@example.com"]
    gateway.send(campaign_message(), mail_from="helpdesk@evil-helpdesk.test", rcpts=people)
    copies = site.delivered(people)

    # The campaign was delivered; today the intelligence knows its link.
    gateway.cli("intel", "add", "--type", "url", CAMPAIGN_URL, "--source", "feed")

    # Alice reports through the endpoint with her signed token.
    with api(gateway, token_for(gateway, people[0])) as client:
        answer = client.post("/api/v1/reports", content=copies[people[0]].read_bytes(),
                             headers={"Content-Type": "message/rfc822"})
    assert answer.status_code == 202, answer.text
    first = answer.json()
    assert first["matched_by"] == "queue-id"

    # Bob forwards his copy as an attachment to the reporting address over SMTP.
    forward = forward_as_attachment(copies[people[1]].read_bytes(), people[1], REPORTING)
    reply = gateway.send(forward, mail_from=people[1], rcpts=[REPORTING])
    assert "report" in reply and "taken" in reply, reply

    # All three copies (Carol never reported) end in Quarantine.
    for person in people:
        wait_until(lambda p=person: site.moved(p, "Quarantine"),
                   what=f"{person}'s copy in Quarantine", log=gateway.log)

    # Both reporters get the outcome, in plain words, at the SMTP sink.
    wait_until(lambda: mails_to(sink, people[0]) and mails_to(sink, people[1]),
               what="both outcome emails", log=gateway.log)
    for person in people[:2]:
        text = mails_to(sink, person)[0].decode("utf-8", "replace")
        assert "Subject: Thank you: the message you reported was dangerous" in text
        assert "phishing attempt" in text
    assert not mails_to(sink, people[2])

    with api(gateway, gateway.token()) as admin:
        cluster = admin.get(f"/api/v1/reports/clusters/{first['cluster']}").json()
        assert cluster["verdict"] == "malicious" and cluster["status"] == "acted"
        assert {r["reporter"] for r in cluster["reports"]} == set(people[:2])
        assert {r["source"] for r in cluster["reports"]} == {"api", "mailbox"}
        assert any(f["symbol"] == "URL_BLOCKLISTED" for f in cluster["evidence"]["findings"])
        intel = gateway.cli("intel", "list", "--type", "sender").stdout.decode()
        assert "helpdesk@evil-helpdesk.test" in intel

    figures = stats(gateway)
    reporters = {r["reporter"]: r for r in figures["reporters"]}
    assert reporters[people[0]]["accuracy"] == 1.0 and reporters[people[1]]["confirmed"] == 1
    users = {u["user"]: u for u in figures["users"]}
    assert users[people[2]]["threats"] >= 1 and users[people[2]]["risk"] > \
        users[people[0]]["risk"]
    org = figures["organisation"]
    assert org["threat_copies_delivered"] == 3 and org["threat_copies_reported"] == 2
    assert org["report_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert org["median_seconds_to_first_report"] is not None


def test_reported_spam_moves_to_junk_everywhere_and_teaches_the_model(site):
    gateway, sink = site.gateway, site.sink
    people = ["dave@example.com", "erin@example.com", "frank@example.com"]
    gateway.send(corpus("spam", 3), mail_from="promo@grants.example.org", rcpts=people)
    copies = site.delivered(people)
    with api(gateway, token_for(gateway, people[0])) as client:
        answer = client.post("/api/v1/reports", content=copies[people[0]].read_bytes(),
                             headers={"Content-Type": "message/rfc822"},
                             params={"kind": "spam"})
    assert answer.status_code == 202, answer.text
    for person in people:
        wait_until(lambda p=person: site.moved(p, "Junk"),
                   what=f"{person}'s copy in Junk", log=gateway.log)
    wait_until(lambda: mails_to(sink, people[0]), what="the spam outcome", log=gateway.log)
    assert b"was spam" in mails_to(sink, people[0])[0]
    wait_until(lambda: (gateway.data_dir / "spam-model.npz").exists(),
               what="the learnt spam model", log=gateway.log)


def test_reported_clean_message_returns_to_the_inbox_with_thanks(site):
    gateway, sink = site.gateway, site.sink
    person = "carol@example.com"
    raw = corpus("ham", 0)
    reply = gateway.send(raw, mail_from="list@lists.example.org", rcpts=[person])
    queue_id = reply.rsplit(" ", 1)[-1]
    copy = site.delivered([person])[person]
    # Carol moved the message to Junk herself before reporting it.
    junk = copy.parents[1] / ".Junk" / "new"
    junk.mkdir(parents=True, exist_ok=True)
    shutil.move(copy, junk / copy.name)
    assert not site.files(person, "INBOX")
    with api(gateway, token_for(gateway, person)) as client:
        answer = client.post("/api/v1/reports", json={"queue_id": queue_id})
    assert answer.status_code == 202, answer.text
    wait_until(lambda: site.files(person, "INBOX"), what="the copy back in the INBOX",
               log=gateway.log)
    assert queue_id.encode() in site.files(person, "INBOX")[0].read_bytes()
    wait_until(lambda: mails_to(sink, person), what="the thanks", log=gateway.log)
    text = mails_to(sink, person)[0].decode("utf-8", "replace")
    assert "Danke" in text  # Carol's outcome emails are in German
