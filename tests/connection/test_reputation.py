"""IP reputation learnt from verdicts, refusing a bad client at connect.

Loopback is a trusted relay by default, so the tests either make it
untrusted or, trusting it as an XCLIENT proxy, name the client each message
comes from: a trusted relay and an untrusted host, with the same history.
"""

from __future__ import annotations

import smtplib
import socket
import time

from tests.test_end_to_end import EICAR, attachment_message

UNTRUSTED_LOOPBACK = {"auth": {"trusted_networks": []}}
RELAY, STRANGER = "198.51.100.7", "192.0.2.7"


def as_client(dns_server, **connection) -> dict:
    """as_client - config: XCLIENT from loopback, 198.51.100.0/24 a trusted relay."""
    return {"smtp": {"xclient_networks": ["127.0.0.1/32"]},
            "auth": {"trusted_networks": ["127.0.0.0/8", "198.51.100.0/24"]},
            "dns": {"nameservers": [dns_server.address], "timeout": "1s"},
            "connection": connection}


def send_as(gateway, ip: str, raw: bytes) -> tuple[int, bytes]:
    """send_as - one message from ip through XCLIENT; the first refusal or DATA's reply."""
    with gateway.smtp() as client:
        code, text = client.docmd("XCLIENT", f"ADDR={ip} HELO=mx.sender.example")
        if code != 220:
            return code, text
        client.ehlo_resp = None
        client.ehlo("mx.sender.example")
        assert client.mail("dana@example.org")[0] == 250
        assert client.rcpt("user@example.com")[0] == 250
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error


def greeting_as(gateway, ip: str) -> tuple[int, bytes]:
    """greeting_as - the reply to XCLIENT naming ip: 220, or the connect refusal."""
    with gateway.smtp() as client:
        return client.docmd("XCLIENT", f"ADDR={ip} HELO=mx.sender.example")


def harmless(subject: str) -> bytes:
    return attachment_message("notes.txt", b"Minutes of Tuesday's meeting.\r\n", subject)


def symbols(verdict: dict) -> set[str]:
    return {finding["symbol"] for finding in verdict["findings"]}


def test_a_client_whose_mail_was_bad_is_refused_at_connect(gateway_factory):
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "connection": {"reputation_min_messages": 3,
                                                     "reputation_reject_ratio": 0.9}})
    for _ in range(3):
        try:
            gateway.send(attachment_message("x.com", EICAR))
        except smtplib.SMTPDataError as refused:
            assert refused.smtp_code == 550
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        greeting = sock.recv(1024)
    assert greeting.startswith(b"554 5.7.1")
    assert b"3 of the last 3 messages" in greeting


def test_good_mail_builds_a_good_reputation(gateway_factory, shared):
    from tests.test_end_to_end import ham

    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "connection": {"reputation_min_messages": 2}})
    for _ in range(3):
        gateway.send(ham(shared))
    assert "IP_REPUTATION_GOOD" in gateway.wait_log("IP_REPUTATION_GOOD", timeout=10)
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")


def bad_history(gateway, *ips: str) -> None:
    """The same history for each: one harmless message, three viruses (75% bad)."""
    for ip in ips:
        assert send_as(gateway, ip, harmless(f"first from {ip}"))[0] == 250
        for _ in range(3):
            assert send_as(gateway, ip, attachment_message("x.com", EICAR))[0] == 550


def test_a_trusted_relay_with_a_bad_history_is_neither_refused_nor_scored(gateway_factory,
                                                                          dns_server):
    gateway = gateway_factory(config=as_client(dns_server,
                                               reputation_min_messages=3,
                                               reputation_reject_ratio=0.7))
    bad_history(gateway, RELAY, STRANGER)
    code, text = greeting_as(gateway, STRANGER)
    assert code == 554 and b"3 of the last 4 messages from 192.0.2.7" in text
    assert greeting_as(gateway, RELAY)[0] == 220
    assert send_as(gateway, RELAY, harmless("relayed"))[0] == 250
    assert not {s for s in symbols(gateway.verdict("relayed")) if s.startswith("IP_REPUTATION")}


def test_a_trusted_relay_is_not_scored_where_an_untrusted_host_is(gateway_factory, dns_server):
    gateway = gateway_factory(config=as_client(dns_server,
                                               reputation_min_messages=3,
                                               reputation_reject_ratio=0.9))
    bad_history(gateway, RELAY, STRANGER)
    for ip in (RELAY, STRANGER):
        assert send_as(gateway, ip, harmless(f"second from {ip}"))[0] == 250
    assert "IP_REPUTATION_POOR" in symbols(gateway.verdict(f"second from {STRANGER}"))
    assert "IP_REPUTATION_POOR" not in symbols(gateway.verdict(f"second from {RELAY}"))


def test_the_refusal_lifts_once_the_bad_history_is_older_than_the_window(gateway_factory,
                                                                         dns_server):
    gateway = gateway_factory(config=as_client(dns_server,
                                               reputation_min_messages=3,
                                               reputation_window="3s"))
    for _ in range(3):
        assert send_as(gateway, STRANGER, attachment_message("x.com", EICAR))[0] == 550
    last_bad = time.monotonic()
    assert greeting_as(gateway, STRANGER)[0] == 554
    # Refused, it adds no mail; the window passes and the history with it.
    while greeting_as(gateway, STRANGER)[0] == 554:
        assert time.monotonic() - last_bad < 15, "still refused long after the window"
        time.sleep(0.25)
    assert time.monotonic() - last_bad > 2.5
    # The stale counts start over: two more viruses are too few to judge by,
    # a third is enough again.
    for _ in range(2):
        assert send_as(gateway, STRANGER, attachment_message("x.com", EICAR))[0] == 550
    assert greeting_as(gateway, STRANGER)[0] == 220
    assert send_as(gateway, STRANGER, attachment_message("x.com", EICAR))[0] == 550
    code, text = greeting_as(gateway, STRANGER)
    assert code == 554 and b"3 of the last 3 messages" in text
