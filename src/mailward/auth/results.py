"""Authentication-Results (RFC 8601): ours added once, forged ones removed.

The gateway writes one Authentication-Results field with its own
authserv-id (``[auth] authserv_id``, by default the host name) into every
delivered message, built from what the SPF, DKIM, DMARC and ARC checks
found. A field that arrives claiming that authserv-id was written by
someone else and would make a mail client or a downstream filter trust a
forged result, so it is removed from the header block before anything reads
the headers (RFC 8601 5).

SECURITY: the removal works on the raw bytes and treats LF, CR and CRLF
alike as line ends, so a header smuggled behind a bare LF (which one parser
sees and another does not) is removed all the same; every other byte of the
message stays as it arrived.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from mailward.mime import first_of
from mailward.pipeline import Stage, Task
from mailward.verdict import Finding

if TYPE_CHECKING:
    from mailward.config import Settings
    from mailward.services import Services

_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_PTYPE_PROPERTY = re.compile(r"^[A-Za-z0-9.-]+$")


def authserv_id(settings: "Settings") -> str:
    """authserv_id - ours: the configured one, or the host name."""
    return (settings.auth.authserv_id or settings.hostname).strip().lower()


def claimed_id(value: bytes) -> str:
    """claimed_id - the authserv-id an Authentication-Results value claims (RFC 8601 2.2)."""
    text = value.decode("utf-8", "replace")
    text = _COMMENT.sub(" ", text).replace("\r", " ").replace("\n", " ")
    first = text.split(";", 1)[0].strip()
    return first.split()[0].lower() if first.split() else ""


def _header_bound(raw: bytes) -> int:
    """_header_bound - an end the header block (up to its empty line) cannot pass.

    Whatever the line ends (CRLF, LF, CR), an empty line follows one line end
    with another, so "\\n\\n", "\\n\\r" or "\\r\\r" occurs at most one byte before it.
    """
    first = first_of(raw, (b"\n\r", b"\n\n", b"\r\r"))
    return first + 2 if first >= 0 else len(raw)


def strip_forged(raw: bytes, own_id: str) -> tuple[bytes, int]:
    """strip_forged - remove Authentication-Results fields that claim our id; (bytes, count)."""
    header = raw[:_header_bound(raw)].lower()
    if b"authentication-results" not in header:
        return raw, 0
    # A claimed id is one token of the field's text; in an ASCII header whose
    # lower case does not hold our id anywhere, no field can claim it.
    wanted = own_id.lower()
    if header.isascii() and wanted.isascii() and wanted.encode() not in header:
        return raw, 0
    return strip_forged_fields(raw, own_id)


def strip_forged_fields(raw: bytes, own_id: str) -> tuple[bytes, int]:
    """strip_forged_fields - strip_forged field by field, without the quick check."""
    own_id = own_id.lower()
    kept: list[bytes] = []
    field: list[bytes] = []
    removed = 0
    position = 0

    def flush() -> None:
        nonlocal removed
        if not field:
            return
        match = _NAME.match(field[0])
        if match and match.group(1).lower() == b"authentication-results":
            value = b"".join(field)[match.end():]
            if claimed_id(value) == own_id:
                removed += 1
                field.clear()
                return
        kept.extend(field)
        field.clear()

    for line in _LINE.finditer(raw):
        chunk = line.group(0)
        if chunk in (b"\r\n", b"\n", b"\r"):
            break
        if chunk[:1] in (b" ", b"\t") and field:
            field.append(chunk)
        else:
            flush()
            field.append(chunk)
        position = line.end()
    else:
        position = len(raw)
    flush()
    if not removed:
        return raw, 0
    return b"".join(kept) + raw[position:], removed


def _value(text: str) -> str:
    """_value - a property value as a token, or quoted when it is not one (RFC 8601 2.3)."""
    if text and _PTYPE_PROPERTY.match(text.replace("@", "").replace("_", "")):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def method_result(method: str, result: str, reason: str = "",
                  properties: list[tuple[str, str]] | None = None) -> str:
    """method_result - one resinfo: method=result (reason) ptype.prop=value (RFC 8601 2.2)."""
    parts = [f"{method}={result}"]
    if reason:
        clean = " ".join(re.sub(r"[()\\\r\n]", " ", reason).split())[:120]
        parts.append(f"({clean})")
    for name, value in properties or []:
        if value:
            parts.append(f"{name}={_value(value)}")
    return " ".join(parts)


def header_value(own_id: str, results: list[str]) -> str:
    """header_value - the whole field value; "none" when nothing was checked."""
    if not results:
        return f"{own_id}; none"
    return f"{own_id}; " + "; ".join(results)


class AuthResultsCheck:
    """Compose our Authentication-Results from the other auth checks' findings."""

    name: ClassVar[str] = "auth_results"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ("spf", "dkim", "arc", "dmarc")
    symbols: ClassVar[dict[str, str]] = {}

    def __init__(self, own_id: str) -> None:
        self.own_id = own_id

    @classmethod
    def from_services(cls, services: "Services") -> "AuthResultsCheck":
        return cls(authserv_id(services.settings))

    async def check(self, task: Task) -> list[Finding]:
        results: list[str] = []
        for finding in task.findings:
            resinfo = finding.data.get("authres") if finding.data else None
            if isinstance(resinfo, list):
                results.extend(resinfo)
            elif isinstance(resinfo, str):
                results.append(resinfo)
        task.headers.append(("Authentication-Results", header_value(self.own_id, results)))
        return []
