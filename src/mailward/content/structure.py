"""Structure: what the parser found malformed, as findings.

The parser never raises; it records defects. This check turns the defects
that matter into symbols: a missing, doubled or unparseable From (the header
DMARC and allow lists rely on), MIME nested or split past the limits, and
the views that were cut at their bounds.
"""

from __future__ import annotations

from typing import ClassVar

from mailward.message import Message
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

_SYMBOLS = {
    "FROM_MISSING": ("HDR_FROM_MISSING", Category.SPAM, "the message has no From header"),
    "FROM_MULTIPLE": ("HDR_FROM_MULTIPLE", Category.POLICY,
                      "the message has more than one From header"),
    "FROM_MALFORMED": ("HDR_FROM_MALFORMED", Category.POLICY,
                       "the From header does not parse as RFC 5322 addresses"),
    "MIME_TOO_DEEP": ("MIME_TOO_DEEP", Category.POLICY, "MIME nesting past the limit"),
    "MIME_TOO_MANY_PARTS": ("MIME_TOO_MANY_PARTS", Category.POLICY, "more MIME parts than the limit"),
    "MULTIPART_NO_CLOSE_DELIMITER": ("MIME_NO_CLOSE_DELIMITER", Category.SPAM,
                                     "a multipart has no close delimiter"),
    "MULTIPART_NO_DELIMITER": ("MIME_NO_DELIMITER", Category.SPAM,
                               "a multipart has no delimiter line at all"),
    "MULTIPART_NO_BOUNDARY": ("MIME_NO_BOUNDARY", Category.SPAM, "a multipart has no boundary"),
    "BASE64_INVALID": ("MIME_BAD_BASE64", Category.SPAM, "a base64 body is invalid"),
    "CHARSET_MISMATCH": ("MIME_CHARSET_MISMATCH", Category.PHISH,
                         "a text part declared in a charset that does not write ASCII "
                         "(EBCDIC, UTF-16, UTF-32) holds plain text; it was read as UTF-8"),
    "TEXT_TRUNCATED": ("TEXT_TRUNCATED", Category.POLICY,
                       "the text was longer than the classifiers read"),
    "URLS_TRUNCATED": ("URLS_TRUNCATED", Category.PHISH,
                       "more URLs than the limit; the rest were not checked"),
}


class StructureCheck:
    """Turn the message's parse defects into findings."""

    name: ClassVar[str] = "structure"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {symbol: text for symbol, _, text in _SYMBOLS.values()}

    @classmethod
    def from_services(cls, services: Services) -> "StructureCheck":
        return cls()

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        return structure_findings(task.message)


def structure_findings(message: Message) -> list[Finding]:
    """structure_findings - the defects of a message that matter, as findings."""
    message.from_addresses
    seen: set[str] = set()
    findings = []
    for defect in message.all_defects:
        key = defect.split(":", 1)[0]
        if key in _SYMBOLS and key not in seen:
            seen.add(key)
            symbol, category, text = _SYMBOLS[key]
            if key == "FROM_MALFORMED":
                text = f"{text}: {(message.root.raw_values('from') or [''])[0][:200]!r}"
            findings.append(Finding(symbol, category, text))
    return findings
