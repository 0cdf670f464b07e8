"""Logging: one logger per subsystem, text for people or JSON for machines.

Severities keep fixed meanings: info is a normal event, warning means the
gateway carries on around a problem, error means a message or a job
failed, critical means an invariant is broken. Lines about a message carry
its queue id; nothing logs message bodies or secrets.

SECURITY: a message may quote what a client sent. Control characters, NUL,
line and paragraph separators and undecodable bytes are written escaped
(``\\x00``, ``\\n``), so a log file stays text and a bare LF in client input
cannot start a forged line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """escape_control - text with control characters and stray surrogates escaped."""
    return _CONTROL.sub(_escape_one, text)


class TextFormatter(logging.Formatter):
    """One line per record: the message's control characters are escaped.

    A traceback appended to an error record keeps its own lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra`` fields kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """setup_logging - configure the root of the ``mailward`` loggers."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("mailward")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for noisy in ("mail.log", "aiosmtpd", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # aiosmtpd quotes client commands in its warnings: they go through the
    # same escaping formatter, not Python's bare last-resort handler.
    for library in ("mail.log", "aiosmtpd"):
        logger = logging.getLogger(library)
        logger.handlers[:] = [handler]
        logger.propagate = False
