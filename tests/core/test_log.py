"""The log formatter keeps one record on one line of text."""

from __future__ import annotations

import io
import json
import logging

from mailward.log import JsonFormatter, TextFormatter, escape_control


def _record(message: str, *args) -> logging.LogRecord:
    return logging.LogRecord("mailward.smtp", logging.INFO, __file__, 1, message, args, None)


def test_control_characters_and_stray_bytes_are_escaped():
    assert escape_control("a\x00b\x01\r\nc\td\x7f\x85") == "a\\x00b\\x01\\r\\nc\\td\\x7f\\x85"
    assert escape_control("x\u2028y") == "x\\u2028y"
    # A byte aiosmtpd kept with surrogateescape is shown as that byte.
    assert escape_control(b"\xff".decode("utf-8", "surrogateescape")) == "\\xff"
    assert escape_control("plain, ünïcode and \\ stay") == "plain, ünïcode and \\ stay"


def test_a_bare_lf_in_client_input_cannot_forge_a_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.emit(_record("%s unrecognised: %s", "s1",
                         "X\nINFO mailward.smtp: forged\x00" + "\udcff"))
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert text == ("INFO mailward.smtp: s1 unrecognised: "
                    "X\\nINFO mailward.smtp: forged\\x00\\xff\n")


def test_json_lines_stay_one_line_and_keep_the_text():
    line = JsonFormatter().format(_record("got %s", "a\nb\x00"))
    assert "\n" not in line and json.loads(line)["message"] == "got a\nb\x00"
