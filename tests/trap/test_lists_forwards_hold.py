"""End to end over SMTP through the real gateway: a message to a distribution
list mailward expands reaches each member as a copy of its own, and a
retro-scan in hold mode takes every one of them out of the mailboxes into
the quarantine, whence ``mailward restore`` puts each back as itself; forwards
between local mailboxes (as an attachment, and inline without the bad link)
are linked at intake and pulled with their original."""

from __future__ import annotations

import json
import time

from tests.trap.test_end_to_end import (Receiver, api, files, message, receiver,  # noqa: F401
                                        trap_config, wait_files, wait_incident)

LISTS = {"staff@example.com": ["alice@example.com", "bob@example.com", "team@example.com"],
         "team@example.com": ["carol@example.com", "alice@example.com",
                              "staff@example.com"]}


def test_list_copies_are_each_held_in_the_quarantine_and_restored_as_themselves(
        gateway_factory, receiver):
    config = trap_config(receiver, trap={"retract_mode": "hold"}, lists={"members": LISTS})
    gateway = gateway_factory(config=config)
    token = gateway.token()
    bad = "https://sso.list-phish.example/login"
    reply = gateway.send(message("Password expiry", bad, "expiry@phish-sender.example"),
                         rcpts=["staff@example.com", "dave@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    root = gateway.data_dir / "mailboxes" / "example.com"
    before = {}
    for user in ("alice", "bob", "carol", "dave"):
        [copy] = wait_files(root / user, 1)
        before[user] = (copy.name, copy.read_bytes())
    # One copy per member (alice is in both lists), none for the list addresses.
    assert not (root / "staff").exists() and not (root / "team").exists()
    trace = api(gateway, token, "GET", f"/api/v1/trace/{queue_id}").json()
    assert "staff@example.com" in json.dumps(trace)

    gateway.cli("intel", "add", "--type", "url", bad, "--source", "feed-l")
    incident = wait_incident(gateway, token, lambda i: i["indicator"]["value"] == bad
                             and i["summary"].get("pulled") == 4)
    assert incident["assessment"] == "contained"
    assert {c["recipient"]: (c["pull"], c["via"]) for c in incident["copies"]} == {
        "alice@example.com": ("pulled", "staff@example.com"),
        "bob@example.com": ("pulled", "staff@example.com"),
        "carol@example.com": ("pulled", "staff@example.com"),
        "dave@example.com": ("pulled", "")}
    # Out of the mailboxes entirely: no Quarantine folder holds them either.
    for user in ("alice", "bob", "carol", "dave"):
        assert files(root / user) == [] and files(root / user / ".Quarantine") == []

    # The analyst sees each held copy in mailward's quarantine, linked to the incident.
    listed = gateway.cli("quarantine", "list").stdout.decode().splitlines()
    held = [line.split("\t") for line in listed if "\t" in line]
    assert sorted(row[4] for row in held) == [f"{u}@example.com"
                                             for u in ("alice", "bob", "carol", "dave")]
    shown = json.loads(gateway.cli("quarantine", "show", held[0][0]).stdout)
    assert shown["pulled"] and shown["incident_id"] == incident["id"]
    assert shown["origin_folder"] == "INBOX"
    raw = gateway.cli("quarantine", "show", "--raw", held[0][0]).stdout
    assert raw in [data for _, data in before.values()]
    # A second scan neither pulls nor holds anything twice.
    assert json.loads(gateway.cli("trap", "run", "--all", "--json").stdout)["pulled"] == 0
    assert len([line for line in gateway.cli("quarantine", "list").stdout.decode()
                .splitlines() if "\t" in line]) == 4

    # One copy is released from the quarantine view by REST, the rest restored by CLI.
    [bob_item] = [row[0] for row in held if row[4] == "bob@example.com"]
    answer = api(gateway, token, "POST", f"/api/v1/quarantine/{bob_item}/release")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "released"
    out = gateway.cli("restore", "<expiry@phish-sender.example>").stdout.decode()
    assert out.count("restored") == 3, out
    for user, (name, data) in before.items():
        [back] = files(root / user)
        assert (back.name, back.read_bytes()) == (name, data)
    assert [line for line in gateway.cli("quarantine", "list").stdout.decode().splitlines()
            if "\t" in line] == []


def forward_as_attachment(forwarder: str, to: str, original: bytes) -> bytes:
    return (f"From: {forwarder}\r\nTo: {to}\r\nSubject: Fwd: is this real?\r\n"
            f"Message-ID: <fwd-att@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n--f\r\n"
            f"Content-Type: text/plain\r\n\r\nHave a look at this one.\r\n--f\r\n"
            f"Content-Type: message/rfc822\r\n\r\n").encode() + original + b"\r\n--f--\r\n"


def forward_inline(forwarder: str, to: str) -> bytes:
    # The client kept the quoted header block and the text, not the link.
    return (f"From: {forwarder}\r\nTo: {to}\r\nSubject: Fwd: Mailbox quota\r\n"
            f"Message-ID: <fwd-inline@example.com>\r\n\r\nFYI, see below.\r\n\r\n"
            f"-------- Forwarded Message --------\r\n"
            f"From: IT Desk <desk@phish-sender.example>\r\n"
            f"Subject: Mailbox quota\r\nTo: staff@example.com\r\n\r\n"
            f"Dear colleague, your mailbox is almost full. Please sign in within 24 hours.\r\n"
            ).encode()


def wait_delivered(mailbox, timeout: float = 90) -> None:
    """wait_delivered - until one message is in the inbox or the Junk folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if files(mailbox) or files(mailbox / ".Junk"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{mailbox}: nothing delivered to the inbox or Junk")


def test_forwards_between_local_mailboxes_are_linked_and_pulled_with_the_original(
        gateway_factory, receiver):
    gateway = gateway_factory(config=trap_config(receiver))
    token = gateway.token()
    bad = "https://quota.phish-kit.example/owa"
    reply = gateway.send(message("Mailbox quota", bad, "quota@phish-sender.example"),
                         rcpts=["alice@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    root = gateway.data_dir / "mailboxes" / "example.com"
    [alice_copy] = wait_files(root / "alice", 1)

    # Alice forwards it to Dave as an attachment and to Erin inline; a reply
    # to Frank quoting it is not a forward and stays untouched.
    gateway.send(forward_as_attachment("alice@example.com", "dave@example.com",
                                       alice_copy.read_bytes()),
                 mail_from="alice@example.com", rcpts=["dave@example.com"])
    gateway.send(forward_inline("alice@example.com", "erin@example.com"),
                 mail_from="alice@example.com", rcpts=["erin@example.com"])
    gateway.send(forward_inline("alice@example.com", "frank@example.com")
                 .replace(b"Subject: Fwd: Mailbox quota", b"Subject: Re: Mailbox quota"),
                 mail_from="alice@example.com", rcpts=["frank@example.com"])
    # A stranger cannot link their mail to alice's copy.
    gateway.send(forward_inline("mallory@example.com", "gina@example.com"),
                 mail_from="mallory@example.com", rcpts=["gina@example.com"])
    # Each is delivered once, to the inbox or (tagged as spam) to Junk.
    for user in ("dave", "erin", "frank", "gina"):
        wait_delivered(root / user)
    gateway.wait_log(f"of {queue_id} (matched by queue-id)")
    gateway.wait_log(f"of {queue_id} (matched by subject)")

    gateway.cli("intel", "add", "--type", "url", bad, "--source", "feed-f")
    incident = wait_incident(gateway, token, lambda i: i["indicator"]["value"] == bad
                             and i["summary"].get("pulled") == 3)
    copies = {c["recipient"]: c for c in incident["copies"]}
    assert set(copies) == {"alice@example.com", "dave@example.com", "erin@example.com"}
    assert copies["erin@example.com"]["matched_on"] == f"forward of {queue_id}"
    assert all(c["pull"] == "pulled" for c in copies.values())
    assert files(root / "alice") == []
    for user in ("alice", "dave", "erin"):
        assert files(root / user) == files(root / user / ".Junk") == []
        assert len(files(root / user / ".Quarantine")) == 1
    for user in ("frank", "gina"):
        assert len(files(root / user) + files(root / user / ".Junk")) == 1
        assert files(root / user / ".Quarantine") == []


def test_a_message_retracted_by_hand_takes_its_forwards_with_it(gateway_factory, receiver):
    gateway = gateway_factory(config=trap_config(receiver))
    reply = gateway.send(message("Mailbox quota", "https://quota.by-hand.example/owa",
                                 "quota-hand@phish-sender.example"),
                         rcpts=["alice@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    root = gateway.data_dir / "mailboxes" / "example.com"
    [alice_copy] = wait_files(root / "alice", 1)
    gateway.send(forward_as_attachment("alice@example.com", "dave@example.com",
                                       alice_copy.read_bytes()),
                 mail_from="alice@example.com", rcpts=["dave@example.com"])
    wait_delivered(root / "dave")
    gateway.wait_log(f"of {queue_id} (matched by queue-id)")

    result = gateway.cli("retract", queue_id).stdout.decode()
    assert "dave@example.com" in result, result
    for user in ("alice", "dave"):
        assert files(root / user) == files(root / user / ".Junk") == []
        assert len(files(root / user / ".Quarantine")) == 1
