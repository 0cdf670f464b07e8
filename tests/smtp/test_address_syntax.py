"""MAIL and RCPT take RFC 5321 paths only; the null sender and quoted local parts stay."""

from __future__ import annotations

from tests.smtp.test_protocol_attacks import Wire


def _session(gateway) -> Wire:
    wire = Wire(gateway.smtp_port)
    assert wire.reply()[0] == 220
    wire.send(b"EHLO client.example.org\r\n")
    assert wire.reply()[0] == 250
    return wire


def _say(wire: Wire, line: str) -> tuple[int, bytes]:
    wire.send(line.encode("utf-8") + b"\r\n")
    code, lines = wire.reply()
    return code, lines[0]


BAD_SENDERS = [
    ("<bad address>", b"space outside quotes"),
    ("<bob smith@example.org>", b"space outside quotes"),
    ("<alice@example..org>", b"not local-part@domain"),
    ("<a..b@example.org>", b"not local-part@domain"),
    ("<(comment)alice@example.org>", b"not local-part@domain"),
    ("<alice@example.org", b"not local-part@domain"),
    ("<alice@-example.org>", b"not local-part@domain"),
    ("<nobody>", b"no domain"),
]
BAD_RECIPIENTS = [
    ("<bob smith@example.com>", b"space outside quotes"),
    ("<\"bob\"smith@example.com>", b"not local-part@domain"),
    ("<>", b"not local-part@domain"),
    ("<sam@example.com.>", b"not local-part@domain"),
]


def test_a_sender_that_is_no_mailbox_gets_553(gateway_factory):
    gateway = gateway_factory()
    for path, why in BAD_SENDERS:
        wire = _session(gateway)
        try:
            code, line = _say(wire, f"MAIL FROM:{path}")
            assert code == 553, (path, line)
            assert line.startswith(b"553 5.1.7 Bad sender address syntax: ")
            assert why in line, (path, line)
            # The transaction did not start: a good sender is taken next, also
            # from a host whose name has an underscore, as real ones do.
            assert _say(wire, "MAIL FROM:<dana.reyes@mail_1.example.org>")[0] == 250
        finally:
            wire.close()


def test_a_recipient_that_is_no_mailbox_gets_553(gateway_factory):
    gateway = gateway_factory()
    for path, why in BAD_RECIPIENTS:
        wire = _session(gateway)
        try:
            assert _say(wire, "MAIL FROM:<dana.reyes@example.org>")[0] == 250
            code, line = _say(wire, f"RCPT TO:{path}")
            assert code == 553, (path, line)
            assert line.startswith(b"553 5.1.3 Bad recipient address syntax: ")
            assert why in line, (path, line)
            assert _say(wire, "RCPT TO:<sam@example.com>")[0] == 250
        finally:
            wire.close()


def test_rfc_5321_paths_are_accepted_and_delivered_as_written(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url)
    wire = _session(gateway)
    try:
        assert _say(wire, 'MAIL FROM:<"dana reyes"@example.org> SIZE=100')[0] == 250
        for path in ('<"a b"@example.com>', '<"a\\"b"@example.com>',
                     "<@relay.example.net:sam@example.com>", "<o'neil+tag@example.com>",
                     "<sam@[192.0.2.1]>", "plain@example.com"):
            assert _say(wire, f"RCPT TO:{path}")[0] == 250, path
        assert _say(wire, "DATA")[0] == 354
        wire.send(b"From: dana@example.org\r\nSubject: paths\r\n\r\nhello\r\n.\r\n")
        assert wire.reply()[0] == 250
    finally:
        wire.close()
    [received] = smtp_sink.wait_for(1, timeout=30)
    assert received.mail_from == '"dana reyes"@example.org'
    assert received.rcpt_tos[:2] == ['"a b"@example.com', '"a\\"b"@example.com']


def test_the_null_sender_is_a_path_for_mail_only(gateway_factory):
    gateway = gateway_factory()
    wire = _session(gateway)
    try:
        assert _say(wire, "MAIL FROM:<> BODY=8BITMIME")[0] == 250
        assert _say(wire, "RCPT TO:<sam@example.com>")[0] == 250
    finally:
        wire.close()
