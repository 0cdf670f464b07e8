"""The main job end to end: a real `mailward serve`, real SMTP in and out."""

from __future__ import annotations

import base64
import smtplib
import socket
import time

import httpx
import pytest

import json

from tests.support.gateway import SHARED, crlf

SHARED_CASES = SHARED / "cases"

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def attachment_message(name: str, payload: bytes, subject: str = "invoice") -> bytes:
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: Dana Reyes <dana@example.org>\r\nTo: user@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <att@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nPlease see attached.\r\n"
            b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n")


def ham(shared) -> bytes:
    path = sorted((shared / "corpus/spam/ham").iterdir())[0]
    return crlf(path.read_bytes())


def test_ham_reaches_the_relay_with_verdict_headers(gateway_factory, smtp_sink, shared):
    gateway = gateway_factory(relay=smtp_sink.url)
    reply = gateway.send(ham(shared))
    queue_id = reply.rsplit(" ", 1)[-1]
    [received] = smtp_sink.wait_for(1)
    head = received.data.split(b"\r\n\r\n", 1)[0].decode()
    assert f"X-Mailward-Queue-Id: {queue_id}" in head
    assert "X-Mailward-Verdict: deliver; score=" in head
    assert head.count("X-Mailward-Verdict") == 1
    assert "Received: from client.test.example" in head
    assert received.rcpt_tos == ["user@example.com"]
    assert f"{queue_id}:" in gateway.wait_log("delivered to <user@example.com>")


def test_eicar_attachment_is_refused_in_the_session(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(attachment_message("readme.com", EICAR))
    assert refused.value.smtp_code == 550
    assert b"5.7.1" in refused.value.smtp_error and b"malware" in refused.value.smtp_error
    time.sleep(0.5)
    assert smtp_sink.messages == []


def test_eicar_inside_a_zip_is_refused(gateway_factory, smtp_sink, shared):
    gateway = gateway_factory(relay=smtp_sink.url)
    archive = (shared / "corpus/malware/synthetic/eicar_com.zip").read_bytes()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(attachment_message("docs.zip", archive))
    assert refused.value.smtp_code == 550


def test_blocklisted_url_is_quarantined_and_release_delivers(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.cli("intel", "add", "--type", "url", "https://login.bad.example.net/verify")
    message = (b"From: it@example.org\r\nTo: user@example.com\r\nSubject: verify\r\n"
               b"Message-ID: <q1@example.org>\r\n\r\n"
               b"Please verify at https://login.bad.example.net/verify today.\r\n")
    gateway.wait_log("intelligence loaded: 1 indicators")
    reply = gateway.send(message)
    assert reply.startswith("2.0.0")
    token = gateway.token()
    headers = {"Authorization": f"Bearer {token}"}
    listing = httpx.get(f"{gateway.web_url}/api/v1/quarantine", headers=headers).json()
    assert listing["total"] == 1
    item = listing["items"][0]
    assert item["category"] == "phish" and item["recipients"] == ["user@example.com"]
    detail = httpx.get(f"{gateway.web_url}/api/v1/quarantine/{item['id']}",
                       headers=headers).json()
    assert any(f["symbol"] == "URL_BLOCKLISTED" for f in detail["verdict"]["findings"])
    assert smtp_sink.messages == []

    released = httpx.post(f"{gateway.web_url}/api/v1/quarantine/{item['id']}/release",
                          headers=headers)
    assert released.status_code == 200 and released.json()["status"] == "released"
    [received] = smtp_sink.wait_for(1)
    assert b"https://login.bad.example.net/verify" in received.data
    assert b"X-Mailward-Released: by token:tests" in received.data
    again = httpx.post(f"{gateway.web_url}/api/v1/quarantine/{item['id']}/release",
                       headers=headers)
    assert again.status_code == 409


def test_api_requires_a_valid_token(gateway_factory):
    gateway = gateway_factory()
    url = f"{gateway.web_url}/api/v1/quarantine"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer mw_forged"}).status_code == 401
    assert httpx.get(f"{gateway.web_url}/healthz").status_code == 200
    token = gateway.token("revoked")
    listing = gateway.cli("token", "list").stdout.decode()
    token_id = [line.split("\t")[0] for line in listing.splitlines() if "\trevoked\t" in line][0]
    gateway.cli("token", "revoke", token_id)
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_killed_right_after_250_delivers_once_after_restart(gateway_factory, smtp_sink, shared):
    # Delivery is pointed at a closed port so the message is still queued when
    # the process dies; the restart points it at the sink.
    gateway = gateway_factory(relay="smtp://127.0.0.1:9", start=True)
    queue_ids = [gateway.send(ham(shared)).rsplit(" ", 1)[-1] for _ in range(3)]
    gateway.kill()
    gateway.sections["delivery"]["relay"] = smtp_sink.url
    gateway.sections["delivery"]["retry_first"] = "0s"
    from tests.support.gateway import write_config

    write_config(gateway.config_path, gateway.sections)
    gateway.start()
    received = smtp_sink.wait_for(3, timeout=30)
    time.sleep(2)
    ids = [line.split(b": ", 1)[1].strip() for message in smtp_sink.messages
           for line in message.data.split(b"\r\n") if line.startswith(b"X-Mailward-Queue-Id:")]
    assert sorted(ids) == sorted(qid.encode() for qid in queue_ids)
    assert len(received) == 3


def test_kill_during_delivery_never_loses_the_message(gateway_factory, smtp_sink, shared):
    gateway = gateway_factory(relay=smtp_sink.url)
    queue_id = gateway.send(ham(shared)).rsplit(" ", 1)[-1]
    gateway.kill()
    gateway.start()
    smtp_sink.wait_for(1, timeout=30)
    time.sleep(1.5)
    ids = [m.data.split(b"X-Mailward-Queue-Id: ", 1)[1].split(b"\r\n")[0]
           for m in smtp_sink.messages]
    assert ids == [queue_id.encode()]


def test_permanent_refusal_downstream_bounces_to_the_sender(gateway_factory, smtp_sink, shared):
    smtp_sink.handler.codes["gone@example.com"] = 550
    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.send(ham(shared), mail_from="sender@example.org",
                 rcpts=["gone@example.com", "user@example.com"])
    messages = smtp_sink.wait_for(2)
    bounce = [m for m in messages if m.mail_from == ""]
    assert len(bounce) == 1 and bounce[0].rcpt_tos == ["sender@example.org"]
    assert b"multipart/report; report-type=delivery-status" in bounce[0].data
    assert b"Final-Recipient: rfc822; gone@example.com" in bounce[0].data
    assert b"Status: 5.0.0" in bounce[0].data or b"Status: 5." in bounce[0].data


def test_temporary_refusal_is_retried(gateway_factory, smtp_sink, shared):
    smtp_sink.handler.codes["later@example.com"] = 451
    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.send(ham(shared), rcpts=["later@example.com"])
    gateway.wait_log("deferred (attempt 1)")
    del smtp_sink.handler.codes["later@example.com"]
    [received] = smtp_sink.wait_for(1, timeout=30)
    assert received.rcpt_tos == ["later@example.com"]


def test_mailbox_store_delivery_without_a_relay(gateway_factory, shared):
    gateway = gateway_factory()
    queue_id = gateway.send(ham(shared), rcpts=["Alice@example.com"]).rsplit(" ", 1)[-1]
    gateway.wait_log("delivered to <Alice@example.com> via maildir")
    inbox = gateway.data_dir / "mailboxes/example.com/alice/new"
    [copy] = list(inbox.iterdir())
    assert queue_id in copy.name
    assert b"X-Mailward-Queue-Id: " + queue_id.encode() in copy.read_bytes()
    for folder in (".Junk", ".Quarantine"):
        assert (gateway.data_dir / "mailboxes/example.com/alice" / folder / "cur").is_dir()


def test_a_config_error_names_the_key_and_stops_the_server(tmp_path):
    from tests.support.gateway import RunningGateway

    gateway = RunningGateway(tmp_path, {"smtp": {"listen": "0.0.0.0:2525"}})
    with pytest.raises(RuntimeError) as failed:
        gateway.start(timeout=20)
    assert "smtp.accepted_domains" in str(failed.value)
    assert "open relay" in str(failed.value)


def test_relaying_to_a_foreign_domain_is_denied(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"accepted_domains": ["example.com"]}})
    with gateway.smtp() as client:
        client.mail("sender@example.org")
        code, text = client.rcpt("victim@example.net")
        assert code == 550 and b"5.7.1" in text
        assert client.rcpt("user@example.com")[0] == 250
        # example.com is that domain only; *.example.com would cover this one.
        code, text = client.rcpt("user@sub.example.com")
        assert code == 550 and b"5.7.1" in text


def test_control_characters_in_addresses_are_refused(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"accepted_domains": ["example.com"]}})
    with gateway.smtp() as client:
        code, text = client.docmd("MAIL FROM:<a\x00b@example.org>")
        assert code == 501 and b"5.1.7" in text
        assert client.mail("sender@example.org")[0] == 250
        code, text = client.docmd("RCPT TO:<ali\x00ce@example.com>")
        assert code == 501 and b"5.1.3" in text
        assert client.rcpt("alice@example.com")[0] == 250


def test_too_many_recipients_get_452(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"max_recipients": 3}})
    with gateway.smtp() as client:
        client.mail("sender@example.org")
        codes = [client.rcpt(f"u{i}@example.com")[0] for i in range(4)]
    assert codes == [250, 250, 250, 452]


def test_oversized_message_gets_552(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"max_message_size": "64KiB"}})
    with gateway.smtp() as client:
        assert client.mail("sender@example.org", ["SIZE=100000"])[0] == 552
        client.rset()
        client.mail("sender@example.org")
        client.rcpt("user@example.com")
        code, _ = client.data(b"Subject: big\r\n\r\n" + b"x" * 70 * 1024 + b"\r\n")
        assert code == 552


def test_a_1mb_header_line_gets_a_verdict(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    message = (b"From: a@example.org\r\nX-Long: " + b"a" * (1024 * 1024) +
               b"\r\nSubject: long\r\n\r\nbody\r\n")
    reply = gateway.send(message)
    assert reply.startswith("2.0.0")
    [received] = smtp_sink.wait_for(1)
    assert received.data.endswith(message)


def test_command_timeout_closes_an_idle_session(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"command_timeout": "1s"}})
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")
        time.sleep(2.5)
        assert sock.recv(1024) == b""


def test_too_many_bad_commands_close_the_session(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"max_bad_commands": 3}})
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        replies = []
        for _ in range(5):
            try:
                sock.sendall(b"BOGUS\r\n")
                replies.append(reader.readline())
            except OSError:
                break
        assert any(line.startswith(b"421") for line in replies)


def test_null_sender_is_accepted(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    with gateway.smtp() as client:
        assert client.mail("<>")[0] == 250
        assert client.rcpt("user@example.com")[0] == 250
        assert client.data(b"From: MAILER-DAEMON@example.org\r\nSubject: bounce\r\n\r\nx\r\n")[0] == 250
    [received] = smtp_sink.wait_for(1)
    assert received.mail_from == ""


def test_a_spooled_message_without_a_record_is_judged_after_restart(gateway_factory, smtp_sink,
                                                                     shared):
    """The process died after the fsync but before recording: nothing is lost."""
    from mailward.envelope import Envelope, new_queue_id
    from mailward.smtp.spool import Spool

    gateway = gateway_factory(relay=smtp_sink.url, start=False)
    spool = Spool(gateway.data_dir)
    envelope = Envelope(new_queue_id(), "sender@example.org", ["user@example.com"],
                        peer_ip="192.0.2.9")
    spool.write(envelope.queue_id, envelope.as_dict(), ham(shared))
    gateway.start()
    [received] = smtp_sink.wait_for(1)
    assert f"X-Mailward-Queue-Id: {envelope.queue_id}".encode() in received.data
    assert b"X-Mailward-Envelope" not in received.data
    assert "judging it again" in gateway.log()


def test_a_pipeline_past_its_deadline_answers_451(gateway_factory, smtp_sink, shared):
    gateway = gateway_factory(relay=smtp_sink.url, config={"pipeline": {"deadline": "0.001s"}})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(ham(shared))
    assert refused.value.smtp_code == 451 and b"4.3.0" in refused.value.smtp_error
    parked = list((gateway.data_dir / "spool/parked").glob("*.eml"))
    assert len(parked) == 1 and smtp_sink.messages == []
    # The administrator sees what was parked and why, and can clear it.
    listed = gateway.cli("parked", "list").stdout.decode()
    queue_id = parked[0].stem
    [line] = [row for row in listed.splitlines() if row.startswith(queue_id)]
    assert "sender@example.org" in line and "deadline" in line, listed
    assert gateway.cli("parked", "delete", "nosuchid", check=False).returncode == 1
    assert b"1 parked copies deleted" in gateway.cli("parked", "delete", queue_id).stdout
    assert not list((gateway.data_dir / "spool/parked").iterdir())


def test_tagged_mail_keeps_one_address_per_header_and_its_mime(gateway_factory, smtp_sink):
    import email
    import email.policy

    raw = (SHARED_CASES / "C10_encoded_word_refold.eml").read_bytes()
    gateway = gateway_factory(relay=smtp_sink.url, config={
        "smtp": {"accepted_domains": ["example.com"]}, "policy": {"tag_external": True}})
    gateway.send(raw, mail_from="dana.reyes@example.org", rcpts=["to@example.com"])
    [received] = smtp_sink.wait_for(1)
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert [a.addr_spec for a in parsed["to"].addresses] == ["to@example.com"]
    assert [a.addr_spec for a in parsed["cc"].addresses] == ["cc@example.com"]
    assert parsed["to"].addresses[0].display_name == \
        "A v\u00e9ry long name with non-ASCII char and, comma"
    assert "came from outside your organisation" in parsed.get_content()
    assert b"X-Mailward-Verdict: tag;" in received.data


def test_json_logs_carry_the_queue_id(gateway_factory, smtp_sink, shared):
    import json

    gateway = gateway_factory(relay=smtp_sink.url, config={"log": {"format": "json",
                                                                    "level": "info"}})
    queue_id = gateway.send(ham(shared)).rsplit(" ", 1)[-1]
    gateway.wait_log('"action": "deliver"')
    entries = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    decision = [e for e in entries if e.get("action")][0]
    assert decision["queue_id"] == queue_id and decision["peer"] == "127.0.0.1"
    assert decision["recipients"] == ["user@example.com"] and "took_ms" in decision


def test_quarantine_from_the_command_line(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.cli("intel", "add", "--type", "domain", "bad.example.net")
    gateway.wait_log("intelligence loaded: 1 indicators")
    for n in range(2):
        gateway.send(b"From: x@example.org\r\nSubject: s%d\r\n\r\nhttps://bad.example.net/%d\r\n"
                     % (n, n))
    listing = gateway.cli("quarantine", "list").stdout.decode()
    ids = [line.split("\t")[0] for line in listing.splitlines() if "\tphish\t" in line]
    assert len(ids) == 2
    shown = json.loads(gateway.cli("quarantine", "show", ids[0]).stdout)
    assert shown["verdict"]["action"] == "quarantine"
    raw = gateway.cli("quarantine", "show", "--raw", ids[0]).stdout
    assert raw.startswith(b"Received: from client.test.example")
    gateway.cli("quarantine", "delete", ids[1])
    assert "released" in gateway.cli("quarantine", "release", ids[0]).stdout.decode()
    smtp_sink.wait_for(1)
    failed = gateway.cli("quarantine", "release", ids[1], check=False)
    assert failed.returncode == 1 and b"deleted" in failed.stderr


def in_a_terminal(gateway, *args: str) -> str:
    """in_a_terminal - what a mailward command writes to a terminal (a pty)."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {**gateway.env(), "COLUMNS": "400", "LINES": "50", "TERM": "xterm-256color"}
    process = subprocess.Popen([sys.executable, "-m", "mailward", "--config",
                                str(gateway.config_path), *args], stdin=follower,
                               stdout=follower, stderr=follower, env=env,
                               cwd=gateway.directory)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def test_a_bidi_override_in_a_subject_cannot_reorder_the_quarantine_listing(
        gateway_factory, smtp_sink):
    from email.header import Header

    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.cli("intel", "add", "--type", "domain", "bad.example.net")
    gateway.wait_log("intelligence loaded: 1 indicators")
    # U+202E shows "Invoice exe.pdf" reversed; ESC sequences clear the screen
    # and retitle the window; the tab and newline would forge columns and rows.
    subject = "Invoice \u202efdp.exe\u202c paid\x1b[2J\x1b]0;owned\x07\tok\nphish"
    encoded = Header(subject, "utf-8").encode(linesep="\r\n")
    raw = (f"From: Billing <billing@example.org>\r\nSubject: {encoded}\r\n\r\n"
           f"https://bad.example.net/invoice\r\n").encode()
    gateway.send(raw)
    shown = "Invoice \\u202efdp.exe\\u202c paid\\u001b[2J\\u001b]0;owned\\u0007 ok phish"

    listing = gateway.cli("quarantine", "list").stdout.decode()
    [line] = listing.splitlines()
    assert line.split("\t")[5] == shown and len(line.split("\t")) == 7
    assert not any(c in listing for c in "\u202e\u202c\x1b\x07")

    table = in_a_terminal(gateway, "quarantine", "list")
    assert "Invoice \\u202efdp.exe\\u202c" in table
    assert not any(c in table for c in "\u202e\u202c\x07")
    assert "\x1b[2J" not in table and "\x1b]0;" not in table


def test_the_gateway_runs_on_postgresql(gateway_factory, smtp_sink, shared, postgres_url):
    gateway = gateway_factory(relay=smtp_sink.url,
                              config={"storage": {"database_url": postgres_url}})
    queue_id = gateway.send(ham(shared)).rsplit(" ", 1)[-1]
    [received] = smtp_sink.wait_for(1)
    assert f"X-Mailward-Queue-Id: {queue_id}".encode() in received.data
    assert not (gateway.data_dir / "mailward.db").exists()


def test_a_message_deferred_past_its_maximum_age_bounces(gateway_factory, smtp_sink, shared):
    smtp_sink.handler.codes["slow@example.com"] = 451
    gateway = gateway_factory(relay=smtp_sink.url, config={"delivery": {"max_age": "3s"}})
    gateway.send(ham(shared), mail_from="sender@example.org", rcpts=["slow@example.com"])
    [bounce] = smtp_sink.wait_for(1, timeout=40)
    assert bounce.mail_from == "" and bounce.rcpt_tos == ["sender@example.org"]
    assert b"Status: 4.4.7" in bounce.data and b"Action: failed" in bounce.data


def test_a_message_failing_inside_the_gateway_bounces_past_its_maximum_age(
        gateway_factory, smtp_sink, shared):
    import sqlite3

    smtp_sink.handler.codes["slow@example.com"] = 451
    gateway = gateway_factory(relay=smtp_sink.url, config={"delivery": {"max_age": "3s"}})
    reply = gateway.send(ham(shared), mail_from="sender@example.org", rcpts=["slow@example.com"])
    queue_id = reply.rsplit(" ", 1)[-1]
    # A record the delivery cannot read: every attempt now fails inside the gateway.
    with sqlite3.connect(gateway.data_dir / "mailward.db") as db:
        db.execute("UPDATE messages SET verdict = '{}' WHERE queue_id = ?", (queue_id,))
    [bounce] = smtp_sink.wait_for(1, timeout=40)
    assert bounce.mail_from == "" and bounce.rcpt_tos == ["sender@example.org"]
    assert b"Status: 4.4.7" in bounce.data and b"internal error during delivery" in bounce.data
    assert "internal error during delivery" in gateway.log()


def test_an_allow_rule_is_not_applied_to_a_forged_from(gateway_factory, smtp_sink):
    # Loopback is no trusted relay here: the client is a sender on the internet.
    gateway = gateway_factory(relay=smtp_sink.url, config={"auth": {"trusted_networks": []}})
    gateway.cli("intel", "add", "--type", "url", "https://login.phish.example.net/verify")
    made = httpx.post(f"{gateway.web_url}/api/v1/senders", timeout=10,
                      headers={"Authorization": f"Bearer {gateway.token()}"},
                      json={"kind": "allow", "sender": "ceo@partner.example"})
    assert made.status_code in (200, 201), made.text
    forged = crlf(b"From: CEO <ceo@partner.example>\nTo: user@example.com\n"
                  b"Subject: verify\nMessage-ID: <forged@spam.example>\n\n"
                  b"Verify now: https://login.phish.example.net/verify\n")
    queue_id = gateway.send(forged, mail_from="spammer@spam.example").rsplit(" ", 1)[-1]
    trace = httpx.get(f"{gateway.web_url}/api/v1/trace/{queue_id}", timeout=10,
                      headers={"Authorization": f"Bearer {gateway.token()}"}).json()
    assert trace["message"]["action"] == "quarantine"
    assert "is not applied: the From address is not authenticated" in trace["message"]["reason"]
    assert "\tphish\tceo@partner.example\t" in gateway.cli("quarantine", "list").stdout.decode()
    assert not smtp_sink.messages
