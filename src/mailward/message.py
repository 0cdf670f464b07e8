"""One parsed message, shared by every check.

The spooled bytes are parsed once. Every view a check needs (headers, the
From addresses, text and HTML parts, the text a reader sees, attachments,
URLs) is computed on first use and kept, so checks never parse again and
never disagree about what the message contains.

SECURITY: the input is hostile. Parsing never raises: malformed input is
recorded in ``defects`` (which checks may turn into findings), and every
expensive view is bounded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.headerregistry import Address
from typing import TYPE_CHECKING

from mailward import htmltext, mime
from mailward.cached import cached_property

if TYPE_CHECKING:
    from mailward.attachments.files import FileNode
    from mailward.urls.extract import ExtractedUrl, Extraction


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One address from a header: display name, address and domain."""

    display_name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


# RFC 5322 addr-spec with the dot-atom local part or a quoted string; the
# domain is a dot-atom of letters, digits and hyphens (or A-labels).
_ADDR_SPEC = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+"
    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*"
    r'|"(?:[^"\\\r\n]|\\.)*")'
    r"@[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?"
    r"(?:\.[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\u0080-\uffff-]*[A-Za-z0-9\u0080-\uffff])?)*")


_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# What a reader's mail program shows as the address of a malformed From: an
# angle-bracketed address (written quoted too: <"a@b">), or a bare one.
_LOOSE_ADDRESS = re.compile(r"[^\s<>@\"]{1,64}@[^\s<>\"]{1,253}")
_LOOSE_ANGLED = re.compile(r"<\s*(" + _LOOSE_ADDRESS.pattern + r'|"{3,320})\s*>')
_LOOSE_BARE = re.compile(r"(?<![^\s<>\",;:()\[\]])[^\s<>@\",;:()\[\]]{1,64}"
                         r"@[^\s<>\",;:()\[\]]{1,253}(?![^\s<>\",;:()\[\]])")
# Stray punctuation around a malformed display name: "Team ,_<a@b>",
# "Team,(<a@b>)".
_NAME_STRAY = " \t,;:_\"'"
_NAME_STRAY_END = _NAME_STRAY + "(<["


def _quotes(text: str) -> tuple[str, str]:
    """_quotes - (text with quoted strings masked by quote marks, text unquoted).

    One pass, linear in the length: an attacker's run of escaped quotes
    costs no more than plain text. An unclosed quote is an ordinary
    character, as mail programs read it.
    """
    masked: list[str] = []
    plain: list[str] = []
    opened = None  # where the open quoted string starts: (in text, in plain)
    index = 0
    while index < len(text):
        char = text[index]
        if opened and char == "\\" and index + 1 < len(text):
            masked += '""'
            plain.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            opened = None if opened else (index, len(plain))
            masked.append('"')
        else:
            masked.append('"' if opened else char)
            plain.append(char)
        index += 1
    if opened:
        masked[opened[0]:] = text[opened[0]:]
        plain.insert(opened[1], '"')
    return "".join(masked), "".join(plain)


def _lenient_mailbox(value: str) -> Mailbox | None:
    """_lenient_mailbox - the one sender a malformed address header shows, or None.

    The address is the last angle-bracketed one outside quoted strings
    (itself perhaps quoted), or, with none, the only bare address; the
    display name is the text before it, unquoted, encoded words decoded,
    stray punctuation trimmed. None when no address is found, or a bare
    address follows the angle-bracketed one or stands beside another
    (several senders: no guess).
    """
    masked, _ = _quotes(value)
    angled = []
    for found in _LOOSE_ANGLED.finditer(masked):
        _, address = _quotes(value[found.start(1):found.end(1)])
        if _LOOSE_ADDRESS.fullmatch(address):
            angled.append((address, found))
    if angled:
        address, found = angled[-1]
        if _LOOSE_BARE.search(masked, found.end()):
            return None
        start = found.start()
    else:
        bare = list(_LOOSE_BARE.finditer(masked))
        if len(bare) != 1:
            return None
        address, start = bare[0].group(0).rstrip("."), bare[0].start()
    _, name = _quotes(value[:start])
    name = mime.decode_words(name).lstrip(_NAME_STRAY).rstrip(_NAME_STRAY_END)
    return Mailbox(" ".join(name.split()), address)


def _strict_mailboxes(header_value: object) -> list[Mailbox] | None:
    """_strict_mailboxes - the addresses of a parsed address header, or None.

    None means malformed: the header parser registered a defect, or an
    address does not survive a strict RFC 5322 check, or the raw text holds
    more angle-bracketed addresses than were parsed (the specials that
    legacy parsers split into several addresses).
    """
    try:
        groups = header_value.groups  # type: ignore[attr-defined]
        defects = header_value.defects  # type: ignore[attr-defined]
    except Exception:
        return None
    result: list[Mailbox] = []
    for group in groups:
        for address in group.addresses:
            if not isinstance(address, Address):
                return None
            spec = address.addr_spec
            if not _ADDR_SPEC.fullmatch(spec):
                return None
            result.append(Mailbox(address.display_name or "", spec))
    if defects:
        return None
    raw = _QUOTED.sub('""', str(header_value))
    if raw.count("<") != raw.count(">") or raw.count("<") > len(result):
        return None
    return result


# The plainest address lists: bare or angle-bracketed addresses, or a name of
# plain words or a quoted name of plain characters before an angle-bracketed
# address, joined by commas. The standard library parses these without a
# defect into the very names and addresses written, so they are read here
# without it.
_PLAIN_SPEC = (r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
               r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
               r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
_PLAIN_MAILBOX = re.compile(
    r"(?P<name>[A-Za-z0-9]+(?: [A-Za-z0-9]+)*) <(?P<named>" + _PLAIN_SPEC + r")>"
    r"|\"(?P<quoted>[A-Za-z0-9 ,.'()_@-]*)\" <(?P<quoted_spec>" + _PLAIN_SPEC + r")>"
    r"|<(?P<angled>" + _PLAIN_SPEC + r")>"
    r"|(?P<bare>" + _PLAIN_SPEC + r")")
_PLAIN_ONE = re.sub(r"\?P<\w+>", "?:", _PLAIN_MAILBOX.pattern)
_PLAIN_LIST = re.compile(f"(?:{_PLAIN_ONE})(?:, ?(?:{_PLAIN_ONE}))*")


def _plain_mailboxes(value: str) -> list[Mailbox] | None:
    """_plain_mailboxes - the mailboxes of a plain address list, or None for any other.

    For the forms of ``_PLAIN_LIST`` the same as ``_strict_mailboxes`` of the
    parsed header, at a small part of the cost.
    """
    if len(value) > mime.MAX_PARSED_HEADER or not _PLAIN_LIST.fullmatch(value):
        return None
    return [Mailbox(found["name"] or found["quoted"] or "",
                    found["named"] or found["quoted_spec"] or found["angled"]
                    or found["bare"])
            for found in _PLAIN_MAILBOX.finditer(value)]


class Message:
    """The parsed form of one message's raw bytes."""

    def __init__(self, raw: bytes, *, limits: mime.Limits | None = None,
                 max_text_bytes: int = 512 * 1024) -> None:
        self.raw, defects = mime.canonicalize(raw)
        self.defects: list[str] = defects
        self.max_text_bytes = max_text_bytes
        self.unpack_limits = None
        self.max_urls = 1000
        self.root = mime.parse(self.raw, limits or mime.Limits())

    # Headers of the top-level entity.

    def header(self, name: str) -> str | None:
        """header - the first value of a top-level header, or None."""
        return self.root.header(name)

    def header_all(self, name: str) -> list[str]:
        """header_all - every value of a top-level header, in order, decoded."""
        return [mime.decode_words(value) for value in self.root.raw_values(name)]

    @cached_property
    def raw_headers(self) -> list[tuple[str, str]]:
        """raw_headers - (name, unfolded raw value) of each top-level header line."""
        block = self.raw[:self.root.body_start].decode("utf-8", "replace")
        fields: list[tuple[str, str]] = []
        for line in block.split("\r\n"):
            if line[:1] in (" ", "\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                fields.append((name.strip(), value.strip()))
        return fields

    def count_header(self, name: str) -> int:
        lowered = name.lower()
        return sum(1 for field, _ in self.raw_headers if field.lower() == lowered)

    @cached_property
    def subject(self) -> str:
        return self.header("subject") or ""

    @cached_property
    def message_id(self) -> str:
        value = self.header("message-id") or ""
        return value.strip()

    @cached_property
    def from_addresses(self) -> list[Mailbox]:
        """from_addresses - the RFC 5322.From mailboxes; [] when malformed.

        Several From headers, or one that does not parse strictly, give [] and
        a defect: such a header must never yield an address that allow and
        block lists or DMARC would trust.
        """
        count = self.count_header("from")
        if count == 0:
            self.defects.append("FROM_MISSING")
            return []
        if count > 1:
            self.defects.append("FROM_MULTIPLE")
            return []
        raw = self.root.raw_values("from")
        mailboxes = _plain_mailboxes(mime.unfold(raw[0])) if len(raw) == 1 else None
        if mailboxes is None:
            values = self.root.header_objects("from")
            mailboxes = _strict_mailboxes(values[0]) if values else None
        if not mailboxes:
            self.defects.append("FROM_MALFORMED")
            return []
        return mailboxes

    @cached_property
    def from_lenient(self) -> Mailbox | None:
        """from_lenient - the one From mailbox as a reader sees it; for scoring only.

        A single From that parses strictly gives its one mailbox; a single
        malformed From ("Jane Doe, CEO <x@example.net>", "Team ,_<x@example.net>")
        gives the address a mail program would show and the text before it
        as the display name, so checks that score a disguise are not blinded
        by the malformation. None without exactly one From header, with
        several mailboxes, or when no single address can be recovered.

        SECURITY: never use this for trust (allow and block lists, DMARC,
        anything that lets mail through): the address is a guess from
        attacker-written text; those use ``from_addresses``.
        """
        mailboxes = self.from_addresses
        if mailboxes:
            return mailboxes[0] if len(mailboxes) == 1 else None
        values = self.root.raw_values("from")
        if (len(values) != 1 or self.count_header("from") != 1
                or len(values[0]) > mime.MAX_PARSED_HEADER):
            return None
        return _lenient_mailbox(values[0])

    @cached_property
    def from_domain(self) -> str | None:
        """from_domain - the one RFC 5322.From domain, or None (RFC 7489 6.6.1)."""
        if len(self.from_addresses) != 1:
            return None
        return self.from_addresses[0].domain

    def addresses(self, name: str) -> list[Mailbox]:
        """addresses - strictly parsed mailboxes of an address header (To, Cc...)."""
        plain = self._plain(name)
        if plain is not None:
            return plain
        found: list[Mailbox] = []
        for value in self.root.header_objects(name):
            found.extend(_strict_mailboxes(value) or [])
        return found

    def _plain(self, name: str) -> list[Mailbox] | None:
        """_plain - the mailboxes of a header whose every value is a plain list, or None."""
        found: list[Mailbox] = []
        for value in self.root.raw_values(name):
            mailboxes = _plain_mailboxes(mime.unfold(value))
            if mailboxes is None:
                return None
            found.extend(mailboxes)
        return found

    # Parts.

    @cached_property
    def entities(self) -> list[mime.Entity]:
        return list(self.root.walk())

    @cached_property
    def leaves(self) -> list[mime.Entity]:
        return [e for e in self.entities if not e.children and not e.is_multipart]

    @cached_property
    def text_parts(self) -> list[mime.Entity]:
        return [e for e in self.leaves if e.content_type == "text/plain"
                and not e.is_attachment]

    @cached_property
    def html_parts(self) -> list[mime.Entity]:
        return [e for e in self.leaves if e.content_type == "text/html"
                and not e.is_attachment]

    @cached_property
    def attachments(self) -> list[mime.Entity]:
        """attachments - leaf parts that are files rather than body text."""
        return [e for e in self.leaves if e.is_attachment]

    @cached_property
    def all_defects(self) -> list[str]:
        found = list(self.defects)
        for entity in self.entities:
            found.extend(entity.defects)
        return found

    # Text a reader sees.

    @cached_property
    def rendered_html(self) -> list[htmltext.RenderedHtml]:
        return [htmltext.render(part.text, self.max_text_bytes * 4)
                for part in self.html_parts]

    @cached_property
    def text(self) -> str:
        """text - the readable body: plain parts, then the visible HTML text.

        When a message has both a plain and an HTML alternative, both are
        kept: attackers put different content in each. The result is cut at
        ``max_text_bytes`` characters and the cut is recorded as a defect.
        """
        # Each part is cut before normalising: NFKC over a huge part costs seconds.
        pieces = [htmltext.normalize_text(part.text[:self.max_text_bytes + 1])
                  for part in self.text_parts]
        pieces.extend(rendered.visible for rendered in self.rendered_html)
        text = "\n\n".join(piece for piece in pieces if piece)
        if len(text) > self.max_text_bytes:
            self.defects.append("TEXT_TRUNCATED")
            text = text[:self.max_text_bytes]
        return text

    @cached_property
    def hidden_text(self) -> str:
        return " ".join(r.hidden for r in self.rendered_html if r.hidden)

    # Deeper views, computed by the stage that owns them.

    @cached_property
    def url_extraction(self) -> "Extraction":
        """url_extraction - every URL, each place it was found, script URIs."""
        from mailward.urls.extract import extract

        return extract(self, self.max_urls)

    @cached_property
    def urls(self) -> list["ExtractedUrl"]:
        """urls - the distinct normalised URLs (at most ``max_urls``)."""
        return self.url_extraction.urls

    @cached_property
    def files(self) -> list["FileNode"]:
        """files - every attachment and archive member, recursively unpacked."""
        from mailward.attachments.files import unpack_message

        return unpack_message(self, self.unpack_limits)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()
