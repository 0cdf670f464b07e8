"""IP reputation learnt from verdicts, refusing a bad client at connect."""

from __future__ import annotations

import socket

from tests.test_end_to_end import EICAR, attachment_message


def test_a_client_whose_mail_was_bad_is_refused_at_connect(gateway_factory):
    gateway = gateway_factory(config={"connection": {"reputation_min_messages": 3,
                                                     "reputation_reject_ratio": 0.9}})
    import smtplib

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

    gateway = gateway_factory(config={"connection": {"reputation_min_messages": 2}})
    for _ in range(3):
        gateway.send(ham(shared))
    assert "IP_REPUTATION_GOOD" in gateway.wait_log("IP_REPUTATION_GOOD", timeout=10)
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")
