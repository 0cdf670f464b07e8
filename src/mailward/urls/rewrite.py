"""Link rewriting: every http(s) link of a delivered copy goes through the click service.

Links are rewritten in the ``href`` of HTML ``a`` and ``area`` elements and
in the text of plain-text parts, per recipient (``urls.signing``). Not
rewritten: hosts of the allow list (``example.com`` is that host,
``*.example.com`` any host under it), ``mailto:`` and every other scheme,
links that are already ours or point to this gateway's web service (its
quarantine digests), parts under a signature or encryption (the
signature would break), and attachments, attached messages included.

The HTML is scanned as the HTML tokenizer reads start tags (WHATWG HTML
13.2.5: comments, raw-text elements, ``/`` between attributes, unquoted
values, the first of duplicated attributes), so that what a browser takes
for a link is what is rewritten; a relative ``href`` is resolved against
the first ``<base href>``, so the rewritten link is absolute. The work is
done on the part's decoded bytes: only link values change, every other byte
stays as it was, in its charset. ``actions`` re-encodes the part with its
own transfer encoding.

SECURITY: the markup is hostile; the scanner is linear, never backtracks
and has no recursion; an unterminated tag or comment ends the scan.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator
from urllib.parse import urlsplit

from ada_url import join_url

from mailward.urls.normalize import parse_url, scheme_of, strip_invisible, trim_trailing
from mailward.urls.signing import Signer

if TYPE_CHECKING:
    from mailward.mime import Entity

log = logging.getLogger("mailward.urls")

_TAG_NAME = re.compile(r"[A-Za-z][^\t\n\f\r />\x00]*")
_SPACE = "\t\n\f\r /"
_RAW_TEXT = ("script", "style", "textarea", "title", "xmp", "noembed", "noframes",
             "iframe", "plaintext")  # noscript is markup: mail clients run no script
_TEXT_LINK = re.compile(r"(?i)(?:\bhttps?://|(?<![\w@.-])www\d{0,3}\.)"
                        r"[^\s<>\"'`\x00-\x1f\x7f]{1,65536}")
_STATEFUL = ("utf-16", "utf-32", "ucs", "iso-2022", "utf-7", "hz", "utf_16", "utf_32")


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    start: int   # where the value (with its quotes) starts
    end: int
    value: str   # the raw value, without quotes


def start_tags(source: str) -> Iterator[tuple[str, list[Attribute]]]:
    """start_tags - (tag name, attributes) of each start tag, in document order."""
    length, position = len(source), 0
    while True:
        position = source.find("<", position)
        if position < 0 or position + 1 >= length:
            return
        if source.startswith("<!--", position):
            end = source.find("-->", position + 4)
            if end < 0:
                return
            position = end + 3
            continue
        if source[position + 1] in "!?/":
            end = source.find(">", position + 1)
            if end < 0:
                return
            position = end + 1
            continue
        match = _TAG_NAME.match(source, position + 1)
        if match is None:
            position += 1
            continue
        name = match.group(0).lower()
        attributes, position = _attributes(source, match.end())
        if position < 0:
            return  # EOF inside a tag: the tokenizer emits nothing
        yield name, attributes
        if name in _RAW_TEXT:
            closing = re.compile(f"</{re.escape(name)}", re.IGNORECASE).search(source, position)
            if closing is None or name == "plaintext":
                return
            position = closing.start()


def _attributes(source: str, position: int) -> tuple[list[Attribute], int]:
    """_attributes - the attributes of one start tag and where the tag ends (-1: EOF)."""
    length = len(source)
    found: list[Attribute] = []
    while True:
        while position < length and source[position] in _SPACE:
            position += 1
        if position >= length:
            return found, -1
        if source[position] == ">":
            return found, position + 1
        start = position
        position += 1  # the first character may be "="
        while position < length and source[position] not in _SPACE + ">=":
            position += 1
        name = source[start:position].lower()
        cursor = position
        while cursor < length and source[cursor] in "\t\n\f\r ":
            cursor += 1
        if cursor >= length or source[cursor] != "=":
            found.append(Attribute(name, position, position, ""))
            continue
        cursor += 1
        while cursor < length and source[cursor] in "\t\n\f\r ":
            cursor += 1
        if cursor >= length:
            return found, -1
        quote = source[cursor]
        if quote in "\"'":
            end = source.find(quote, cursor + 1)
            if end < 0:
                return found, -1
            found.append(Attribute(name, cursor, end + 1, source[cursor + 1:end]))
            position = end + 1
        else:
            end = cursor
            while end < length and source[end] not in "\t\n\f\r >":
                end += 1
            found.append(Attribute(name, cursor, end, source[cursor:end]))
            position = end


def allowed(host: str, rules: list[str]) -> bool:
    """allowed - the host is on the allow list (exact host, or ``*.domain`` below it)."""
    host = host.lower().rstrip(".")
    for rule in rules:
        rule = rule.lower().rstrip(".")
        if rule.startswith("*."):
            if host.endswith(rule[1:]):
                return True
        elif host == rule:
            return True
    return False


class CopyRewriter:
    """Rewrites the links of one message for one recipient."""

    def __init__(self, signer: Signer, queue_id: str, recipient: str,
                 allow: list[str]) -> None:
        self.signer = signer
        self.queue_id = queue_id
        self.recipient = recipient
        self.allow = allow
        self.count = 0

    def target(self, url: str) -> str | None:
        """target - the rewritten link for url, or None when it stays as it is."""
        url = strip_invisible(url).strip()
        if not url or self.signer.is_ours(url) or scheme_of(url) not in ("http", "https", ""):
            return None
        parsed = parse_url(url)
        if parsed is None or allowed(parsed.host, self.allow):
            return None
        if not scheme_of(url):
            url = parsed.href  # www.host or //host: the absolute form a client opens
        self.count += 1
        return self.signer.link(url, self.queue_id, self.recipient)

    # Parts.

    def html(self, data: bytes, charset: str) -> bytes | None:
        """html - the HTML with its links rewritten, or None if nothing changed."""
        source = data.decode("latin-1")
        base = ""
        edits: list[tuple[int, int, str]] = []
        for name, attributes in start_tags(source):
            if name == "base" and not base:
                base = _value(_first(attributes, "href"), charset)
                continue
            if name not in ("a", "area"):
                continue
            attribute = _first(attributes, "href")
            if attribute is None:
                continue
            url = _value(attribute, charset).strip()
            if base and not scheme_of(url) and not url.startswith(("//", "#")):
                try:
                    url = join_url(base, url)
                except ValueError:
                    continue
            replacement = self.target(url)
            if replacement is not None:
                edits.append((attribute.start, attribute.end,
                               '"' + html.escape(replacement, quote=True) + '"'))
        return _apply(data, edits)

    def text(self, data: bytes, charset: str) -> bytes | None:
        """text - the plain text with its links rewritten, or None if nothing changed."""
        source = data.decode("latin-1")
        edits: list[tuple[int, int, str]] = []
        for match in _TEXT_LINK.finditer(source):
            raw = trim_trailing(match.group(0))
            url = raw.encode("latin-1").decode(_codec(charset), "replace")
            replacement = self.target(url)
            if replacement is not None:
                edits.append((match.start(), match.start() + len(raw), replacement))
        return _apply(data, edits)

    def part(self, entity: "Entity") -> bytes | None:
        """part - the decoded payload of a readable part with its links rewritten."""
        if not rewritable(entity):
            return None
        if entity.content_type == "text/html":
            return self.html(entity.payload, entity.read_charset)
        return self.text(entity.payload, entity.read_charset)


def rewritable(entity: "Entity") -> bool:
    """rewritable - a body part a reader reads, not inside an attachment, ASCII-based."""
    if any(entity.read_charset.startswith(prefix) for prefix in _STATEFUL):
        return False
    node = entity.parent
    while node is not None:
        if node.is_attachment:
            return False
        node = node.parent
    return not entity.is_attachment


def _first(attributes: list[Attribute], name: str) -> Attribute | None:
    """_first - the first attribute of a name, as browsers keep it."""
    return next((a for a in attributes if a.name == name), None)


def _codec(charset: str) -> str:
    """_codec - a Python codec name for a MIME charset (unknown: UTF-8)."""
    from mailward.mime import text_codec

    return text_codec(charset or "utf-8") or "utf-8"


def _value(attribute: Attribute | None, charset: str) -> str:
    """_value - an attribute value as the HTML parser gives it (entities decoded)."""
    if attribute is None:
        return ""
    text = attribute.value.encode("latin-1").decode(_codec(charset), "replace")
    return html.unescape(text)


def _apply(data: bytes, edits: list[tuple[int, int, str]]) -> bytes | None:
    """_apply - the data with each (start, end) span replaced, or None if no edit."""
    if not edits:
        return None
    pieces, last = [], 0
    for start, end, replacement in edits:
        pieces.append(data[last:start])
        pieces.append(replacement.encode("ascii"))
        last = end
    pieces.append(data[last:])
    return b"".join(pieces)


def copy_rewriter(gateway, queue_id: str,
                  recipient: str) -> Callable[["Entity"], bytes | None] | None:
    """copy_rewriter - the part rewriter of one delivered copy, or None when off."""
    settings = gateway.settings
    if not settings.urls.rewrite or not gateway.is_local(recipient):
        return None
    # Links to this gateway's own web service (digests, click links) stay as they are.
    own = [host for host in (urlsplit(settings.public_url).hostname,
                             urlsplit(settings.click_base).hostname) if host]
    return CopyRewriter(signer_for(gateway.services), queue_id, recipient,
                        list(settings.urls.allow_domains) + own).part


def signer_for(services) -> Signer:
    """signer_for - the process's link signer (keys loaded once, reloaded on change)."""
    signer = services.extras.get("url_signer")
    if signer is None:
        from mailward.urls.signing import KeyRing

        settings = services.settings
        path = settings.urls.keys_file or str(settings.data_dir / "url-keys.json")
        keys = KeyRing(Path(path))
        keys.load()
        signer = Signer(keys, settings.click_base)
        services.extras["url_signer"] = signer
    return signer
