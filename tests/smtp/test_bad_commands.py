"""Unrecognised commands count against smtp.max_bad_commands like any error."""

from __future__ import annotations

from tests.smtp.test_protocol_attacks import Wire


def _replies(wire: Wire, command: bytes, count: int) -> list[bytes]:
    """_replies - the first reply line to each of count copies of command."""
    lines = []
    for _ in range(count):
        wire.send(command)
        lines.append(wire.reply()[1][0])
    return lines


def test_unrecognised_commands_end_the_session_at_the_configured_limit(gateway_factory):
    # The default, 10: aiosmtpd alone would close at the 5th with 502.
    gateway = gateway_factory()
    wire = Wire(gateway.smtp_port)
    try:
        assert wire.reply()[0] == 220
        lines = _replies(wire, b"FOO\r\n", 11)
        assert lines[:10] == [b'500 Error: command "FOO" not recognized'] * 10
        assert lines[10] == b"421 4.7.0 Too many errors, closing connection"
        assert wire.pending(wait=2.0) == b""  # closed
    finally:
        wire.close()


def test_unrecognised_and_other_errors_share_one_count(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"max_bad_commands": 8}})
    wire = Wire(gateway.smtp_port)
    try:
        assert wire.reply()[0] == 220
        wire.send(b"EHLO client.example.org\r\n")
        assert wire.reply()[0] == 250
        codes = []
        for command in (b"FOO\r\n", b"RCPT TO:<a@example.com>\r\n", b"BAR\r\n",
                        b"DATA\r\n", b"FOO\r\n", b"BAZ\r\n", b"QUX\r\n", b"FOO\r\n",
                        b"BAR\r\n"):
            wire.send(command)
            codes.append(wire.reply()[0])
        assert codes == [500, 503, 500, 503, 500, 500, 500, 500, 421]
        assert wire.pending(wait=2.0) == b""
    finally:
        wire.close()


def test_a_known_verb_after_unknown_ones_still_works(gateway_factory):
    gateway = gateway_factory()
    wire = Wire(gateway.smtp_port)
    try:
        assert wire.reply()[0] == 220
        _replies(wire, b"FOO\r\n", 6)
        wire.send(b"HELP FOO\r\n")
        assert wire.reply()[0] == 501
        wire.send(b"NOOP\r\n")
        assert wire.reply()[0] == 250
    finally:
        wire.close()
