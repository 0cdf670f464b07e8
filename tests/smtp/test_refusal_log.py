"""Every SMTP refusal leaves a log line; client bytes in the log are escaped."""

from __future__ import annotations

import re

from mailward.log import escape_control
from tests.smtp.test_protocol_attacks import Wire

HEADER = b"From: dana.reyes@example.org\r\nTo: sam.okafor@example.com\r\nSubject: hi\r\n\r\n"


def _transaction(wire: Wire) -> None:
    for command in (b"MAIL FROM:<dana.reyes@example.org>\r\n",
                    b"RCPT TO:<sam.okafor@example.com>\r\n", b"DATA\r\n"):
        wire.send(command)
        assert wire.reply()[0] in (250, 354)


def test_each_refusal_is_logged_with_session_ip_and_reply(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url,
                              config={"smtp": {"max_message_size": 2000}})
    wire = Wire(gateway.smtp_port)
    replies = []
    try:
        wire.reply()
        wire.send(b"EHLO client.example.org\r\n")
        wire.reply()
        wire.send(b"\x00\x01\x02\rforged line\r\n")
        replies.append(wire.reply())
        wire.send(b"MAIL FROM:<dana.reyes@example.org> SIZE=999999\r\n")
        replies.append(wire.reply())
        wire.send(b"MAIL FROM:<dana.reyes@example.org>\r\n")
        wire.reply()
        wire.send(b"RCPT TO:<nobody>\r\n")
        replies.append(wire.reply())
        wire.send(b"RSET\r\n")
        wire.reply()
        _transaction(wire)
        wire.send(HEADER + b"bare\nline\r\n.\r\n")
        replies.append(wire.reply())
        _transaction(wire)
        wire.send(HEADER + b"x" * 3000 + b"\r\n.\r\n")
        replies.append(wire.reply())
    finally:
        wire.close()
    codes = [(code, lines[0][:9]) for code, lines in replies]
    assert codes == [(500, b"500 Error"), (552, b"552 5.3.4"), (550, b"550 5.1.3"),
                     (550, b"550 5.5.2"), (552, b"552 5.3.4")]
    log = gateway.wait_log("refused: 552 5.3.4 Message exceeds", timeout=10.0)
    session = re.search(r"(\S+): connect from 127\.0\.0\.1", log).group(1)
    for code, lines in replies:
        reply = escape_control(lines[0].decode("ascii"))
        assert f"{session}: 127.0.0.1 refused: {reply}" in log, reply
    # The client's NUL, control bytes and CR are written escaped, on one line.
    assert 'command "\\x00\\x01\\x02\\rFORGED" not recognized' in log
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", log)
    assert smtp_sink.messages == []
