"""Report intake: find the original message inside what a reporter sent.

A report arrives as the original itself (REST, raw RFC 822), as a forward
with the original attached (message/rfc822), as an ARF feedback report
(RFC 5965: a multipart/report whose third part is the original or its
headers), or as an inline forward that lost the original headers. Each
gives a list of ``Candidate`` originals, innermost first, that matching
(``reports.matching``) tries against the message index in turn.

SECURITY: everything here is written by the reporter or by the attacker
whose message is reported. Sizes and forward depth are bounded, the MIME
parser records defects instead of raising, and a report whose parts are
broken is an answer that says what was missing, never an exception.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from email.utils import getaddresses

from mailward.message import Message
from mailward.mime import Entity

ARF_TYPE = "feedback-report"
_FORWARD_PREFIX = re.compile(r"^\s*((re|fw|fwd|wg|tr|aw|sv|vs|rv|enc)\s*(\[\d+\])?\s*:\s*)+",
                             re.IGNORECASE)
# Lines of an inline forward's quoted header block (several mail clients' wording).
_QUOTED_FIELD = re.compile(r"(?im)^[>\s*]*(from|von|de|subject|betreff|objet|sujet|"
                           r"message-id)\s*:\s*(.+)$")
_MAX_QUOTED = 64 * 1024


class IntakeError(ValueError):
    """A report that cannot be taken; the text says what the reporter should do."""


@dataclass(slots=True)
class Candidate:
    """One message that may be the reported original, and how it was found."""

    how: str  # "original", "attachment", "arf", "arf-headers", "inline"
    depth: int = 0
    raw: bytes = b""
    queue_id: str = ""
    message_id: str = ""
    subject: str = ""
    sender: str = ""
    urls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Intake:
    """What a report carried: its candidates, and the problems seen on the way."""

    candidates: list[Candidate]
    problems: list[str] = field(default_factory=list)
    feedback_type: str = ""


def normalize_subject(subject: str) -> str:
    """normalize_subject - a subject without reply and forward prefixes or spacing."""
    text = _FORWARD_PREFIX.sub("", subject or "")
    return " ".join(text.split()).lower()[:500]


def _describe(raw: bytes, how: str, depth: int, limit_urls: int = 200) -> Candidate:
    """_describe - the identifiers of one message for matching."""
    message = Message(raw)
    senders = message.from_addresses
    queue_id = (message.header("x-mailward-queue-id") or "").strip()
    urls = [found.url for found in message.urls[:limit_urls]]
    return Candidate(how, depth, message.raw, queue_id[:32], message.message_id[:998],
                     message.subject[:2000], senders[0].address.lower() if senders else "",
                     urls)


def _embedded(entity: Entity) -> Entity | None:
    if entity.content_type in ("message/rfc822", "message/global") and entity.children:
        return entity.children[0]
    return None


def _bytes_of(entity: Entity) -> bytes:
    return entity.buffer[entity.start:entity.end]


def _attached(root: Entity, depth: int, limit: int, found: list[tuple[int, Entity]]) -> None:
    """_attached - every embedded message under root, with its forward depth."""
    for node in root.walk():
        inner = _embedded(node)
        if inner is None or node is root:
            continue
        found.append((depth, inner))
        if depth < limit:
            _attached(inner, depth + 1, limit, found)


def _feedback_fields(entity: Entity) -> dict[str, str]:
    """_feedback_fields - the fields of a message/feedback-report part (RFC 5965 3.1)."""
    text = entity.payload[:65536].decode("utf-8", "replace")
    parsed = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)
    return {key.lower(): " ".join(str(value).split()) for key, value in parsed.items()}


def read_arf(message: Message, limit: int) -> Intake:
    """read_arf - the original of an ARF report (RFC 5965 section 2), or what is missing.

    The report is multipart/report; report-type=feedback-report with a
    human-readable part, a message/feedback-report part, and the original as
    message/rfc822 or its header as text/rfc822-headers. A part that is
    missing or unreadable is named among the problems; the original is still
    used when it is there.
    """
    problems: list[str] = []
    parts = message.root.children
    fields: dict[str, str] = {}
    report = [p for p in parts if p.content_type == "message/feedback-report"]
    if not report:
        problems.append("the ARF report has no message/feedback-report part")
    else:
        fields = _feedback_fields(report[0])
        for required in ("feedback-type", "user-agent", "version"):
            if required not in fields:
                problems.append(f"the feedback report lacks its {required} field")
    candidates: list[Candidate] = []
    for part in parts:
        inner = _embedded(part)
        if inner is not None:
            nested: list[tuple[int, Entity]] = []
            _attached(inner, 1, limit, nested)
            for depth, entity in sorted(nested, key=lambda pair: -pair[0]):
                candidates.append(_describe(_bytes_of(entity), "arf", depth))
            candidates.append(_describe(_bytes_of(inner), "arf", 0))
        elif part.content_type == "text/rfc822-headers":
            headers = part.payload[:65536].rstrip(b"\r\n") + b"\r\n\r\n"
            candidates.append(_describe(headers, "arf-headers", 0))
    if not candidates:
        problems.append("the ARF report carries neither the original message "
                        "(message/rfc822) nor its headers (text/rfc822-headers)")
    return Intake(candidates, problems, fields.get("feedback-type", ""))


def _quoted_header(message: Message) -> Candidate | None:
    """_quoted_header - an inline forward's From and Subject, and the URLs it carries."""
    text = message.text[:_MAX_QUOTED]
    found: dict[str, str] = {}
    for name, value in _QUOTED_FIELD.findall(text):
        key = {"von": "from", "de": "from", "betreff": "subject", "objet": "subject",
               "sujet": "subject"}.get(name.lower(), name.lower())
        found.setdefault(key, value.strip())
    if not found and not message.urls:
        return None
    sender = ""
    if "from" in found:
        addresses = [a for _, a in getaddresses([found["from"]]) if "@" in a]
        sender = addresses[0].lower() if addresses else ""
    subject = found.get("subject") or message.subject
    return Candidate("inline", 1, b"", "", found.get("message-id", "").strip()[:998],
                     subject[:2000], sender, [u.url for u in message.urls[:200]])


def read_submission(raw: bytes, max_depth: int, wrapped: bool) -> Intake:
    """read_submission - the candidates of a reported message.

    ``wrapped`` says the bytes are the reporter's own mail (the reporting
    address): the original is then inside it, attached, in an ARF report,
    or quoted inline. Otherwise the bytes are the original itself (REST),
    though a client may still send a forward, which is unwrapped alike.
    """
    message = Message(raw)
    if message.root.content_type == "multipart/report" and \
            (message.root.param("report-type") or "").lower() == ARF_TYPE:
        report = read_arf(message, max_depth)
        if not report.candidates:
            raise IntakeError("; ".join(report.problems))
        return report
    nested: list[tuple[int, Entity]] = []
    _attached(message.root, 1, max_depth, nested)
    problems: list[str] = []
    if any(depth >= max_depth for depth, _ in nested):
        problems.append(f"forwards nested deeper than {max_depth} were not opened")
    candidates = [_describe(_bytes_of(entity), "attachment", depth)
                  for depth, entity in sorted(nested, key=lambda pair: -pair[0])]
    if not wrapped:
        candidates.append(_describe(message.raw, "original", 0))
    elif not candidates:
        quoted = _quoted_header(message)
        if quoted is not None:
            candidates.append(quoted)
    if not candidates:
        raise IntakeError("no original message found: forward the suspicious message "
                          "as an attachment, or use the Report phishing button")
    return Intake(candidates, problems)
