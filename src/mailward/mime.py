"""The MIME structure of a message as byte ranges of its raw bytes.

Every stage (authentication, the checks, the banner, URL rewriting and
delivery) works on this one structure, so no two of them can disagree about
where a part begins or ends (the parser differentials that SMTP-to-MIME
smuggling lives on). Header blocks are parsed by the standard library's
``email`` package with ``policy.default``; this module only finds the
boundaries, which the standard library cannot report as offsets. Keeping the
offsets lets the gateway change one part (a banner, a rewritten link) and
leave every other byte of the message as it arrived.

SECURITY: the input is hostile. Nesting depth and part count are bounded,
a malformed structure is recorded as a defect and never raises, and only a
delimiter line as RFC 2046 section 5.1.1 defines it ends a part (so
``--b1--x`` is body text, not a close delimiter).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import BaseHeader
from email.message import Message
from email.parser import BytesHeaderParser

from mailward.cached import cached_property

# Longest address header value parsed (a folded To of a hundred recipients is
# about 4 KB); longer ones are defects, never parsed.
MAX_PARSED_HEADER = 8192

CRLF = b"\r\n"
IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})
_HEADER_PARSER = BytesHeaderParser(policy=policy.compat32)
_LONE_NEWLINE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_MBOX_FROM = re.compile(rb"From [^\s:]")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # a raw 8-bit byte, surrogate-escaped
# A header line as the standard library's feed parser tells one: a name of
# printable ASCII other than the colon, then the colon.
_FIELD_START = re.compile(r"[\041-\071\073-\176]+:")


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the parser follows; past them it records a defect."""

    max_depth: int = 30
    max_parts: int = 2000


def canonicalize(raw: bytes) -> tuple[bytes, list[str]]:
    """canonicalize - CRLF line ends and no mbox ``From `` line.

    Files on disk often use LF line ends and start with an mbox envelope
    line; SMTP input has CRLF already (bare LF is refused or normalised in
    the session). Both become the same canonical bytes here.
    """
    defects = []
    if _MBOX_FROM.match(raw):
        newline = raw.find(b"\n")
        raw = raw[newline + 1:] if newline >= 0 else b""
        defects.append("MBOX_FROM_LINE")
    if b"\r" not in raw:  # every LF is bare: the common case of a file, done in C
        if b"\n" in raw:
            raw = raw.replace(b"\n", CRLF)
            defects.append("BARE_NEWLINE_NORMALIZED")
        return raw, defects
    without_crlf = raw.replace(CRLF, b"")
    if b"\n" in without_crlf or b"\r" in without_crlf:
        raw = _LONE_NEWLINE.sub(CRLF, raw)
        defects.append("BARE_NEWLINE_NORMALIZED")
    return raw, defects


@dataclass(eq=False)
class Entity:
    """One MIME entity: its header block and body as ranges of ``buffer``.

    ``buffer`` is the raw message for every entity except those inside a
    message/rfc822 part that was itself transfer-encoded; those have their
    own decoded buffer and ``spliceable`` is false.
    """

    buffer: bytes
    start: int
    body_start: int
    end: int
    depth: int
    path: str
    spliceable: bool = True
    children: list["Entity"] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    parent: "Entity | None" = field(default=None, repr=False)
    default_type: str = "text/plain"

    # Headers

    @cached_property
    def headers(self) -> Message:
        """The header block with raw values (``compat32``: fast, lossless)."""
        block = self.buffer[self.start:self.body_start]
        try:
            parsed = parse_header_block(block)
        except Exception:  # the stdlib parser is not proven total
            parsed = Message()
            self.defects.append("HEADER_BLOCK_UNPARSEABLE")
        if self.default_type != "text/plain":
            parsed.set_default_type(self.default_type)
        return parsed

    @cached_property
    def _values_by_name(self) -> dict[str, list[str]]:
        """The raw values of the header block by lower-cased name, in order."""
        found: dict[str, list[str]] = {}
        for key, value in self.headers.raw_items():
            found.setdefault(key.lower(), []).append(_clean(value))
        return found

    def raw_values(self, name: str) -> list[str]:
        """raw_values - every raw (undecoded, unfolded) value of a header."""
        return list(self._values_by_name.get(name.lower(), ()))

    def header_objects(self, name: str) -> list[BaseHeader]:
        """header_objects - the values parsed by ``policy.default`` (RFC 5322).

        A value longer than ``MAX_PARSED_HEADER`` is not parsed (the parser's
        time grows faster than the length: 180 KB of a hostile From took half a
        minute) and is recorded as a defect instead.
        """
        parsed = self._parsed_headers.get(name)
        if parsed is None:  # each header is parsed once; its defects count at every call
            parsed = []
            for value in self.raw_values(name):
                if len(value) > MAX_PARSED_HEADER:
                    parsed.append(f"HEADER_TOO_LONG:{name.lower()}")
                    continue
                try:
                    parsed.append(_header_class(name)(name, unfold(value)))
                except Exception:
                    parsed.append(f"HEADER_UNPARSEABLE:{name.lower()}")
            self._parsed_headers[name] = parsed
        found = []
        for item in parsed:
            if isinstance(item, BaseHeader):
                found.append(item)
            else:
                self.defects.append(item)
        return found

    @cached_property
    def _parsed_headers(self) -> dict[str, list[BaseHeader | str]]:
        """What ``header_objects`` made of each name: a header, or the defect it gave."""
        return {}

    def header(self, name: str) -> str | None:
        """header - the first value of a header, encoded words decoded."""
        values = self.raw_values(name)
        return decode_words(values[0]) if values else None

    @cached_property
    def content_type(self) -> str:
        try:
            return self.headers.get_content_type()
        except Exception:
            self.defects.append("CONTENT_TYPE_UNPARSEABLE")
            return self.default_type

    @property
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def subtype(self) -> str:
        return self.content_type.partition("/")[2]

    def param(self, name: str) -> str | None:
        try:
            value = self.headers.get_param(name, header="content-type")
        except Exception:
            return None
        if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
            value = value[2]
        return None if value is None else str(value)

    @cached_property
    def charset(self) -> str:
        return (self.param("charset") or "us-ascii").strip().lower()

    @cached_property
    def transfer_encoding(self) -> str:
        value = self.header("content-transfer-encoding") or ""
        return value.strip().lower()

    @cached_property
    def filename(self) -> str | None:
        """filename - the attachment name, RFC 2231 and encoded words decoded."""
        try:
            name = self.headers.get_filename()
        except Exception:
            self.defects.append("FILENAME_UNPARSEABLE")
            return None
        return None if name is None else decode_words(str(name))

    @cached_property
    def disposition(self) -> str:
        try:
            return (self.headers.get_content_disposition() or "").lower()
        except Exception:
            return ""

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"

    @property
    def is_attachment(self) -> bool:
        """is_attachment - a part meant as a file rather than readable text."""
        if self.disposition == "attachment":
            return True
        if self.maintype in ("multipart", "message"):
            return False
        if self.content_type in ("text/plain", "text/html") and not self.filename:
            return False
        return self.maintype not in ("text",) or bool(self.filename)

    # Body

    @property
    def body(self) -> bytes:
        """body - the body bytes as they are on the wire (still encoded)."""
        return self.buffer[self.body_start:self.end]

    @cached_property
    def payload(self) -> bytes:
        """payload - the body with its transfer encoding undone, tolerantly."""
        return decode_transfer(self.body, self.transfer_encoding, self.defects)

    @cached_property
    def text(self) -> str:
        """text - the payload decoded with its charset (unknown: UTF-8, replaced)."""
        return decode_charset(self.payload, self.charset, self.defects)

    @property
    def read_charset(self) -> str:
        """read_charset - the charset ``text`` was read with: the declared one, or
        UTF-8 when the declared one does not write ASCII and the bytes are UTF-8."""
        self.text
        if any(defect.startswith("CHARSET_MISMATCH:") for defect in self.defects):
            return "utf-8"
        return self.charset

    def walk(self):
        """walk - this entity and every entity below it, depth first."""
        stack = [self]
        while stack:
            entity = stack.pop()
            yield entity
            stack.extend(reversed(entity.children))


def parse_header_block(block: bytes) -> Message:
    """parse_header_block - the header block as ``BytesHeaderParser(compat32)`` reads it.

    A plain block (one kind of line end, every line a field or its
    continuation up to the empty line, no envelope ``From `` line past the
    first) is split here directly, into the same Message the standard
    library's feed parser builds, at a fraction of its cost; any other block
    goes to that parser.
    """
    simple = _simple_header_block(block)
    if simple is None:
        return _HEADER_PARSER.parsebytes(block)
    unixfrom, fields, payload = simple
    parsed = Message(policy=policy.compat32)
    if unixfrom is not None:
        parsed.set_unixfrom(unixfrom)
    for name, value in fields:
        parsed.set_raw(name, value)
    parsed.set_payload(payload)
    return parsed


def _simple_header_block(block: bytes) -> tuple[str | None, list[tuple[str, str]], str] | None:
    """_simple_header_block - (unix-from, fields, rest) of a plain block, or None."""
    text = block.decode("ascii", "surrogateescape")  # as the feed parser reads bytes
    if "\r" not in text:
        ending = "\n"
    elif text.count("\r") == text.count("\n") == text.count("\r\n"):
        ending = "\r\n"
    else:
        return None
    lines = text.split(ending)
    last = lines.pop()  # the text after the last line end, if any
    lines = [line + ending for line in lines]
    if last:
        lines.append(last)
    unixfrom = None
    fields: list[tuple[str, str]] = []
    current: list[str] = []
    for number, line in enumerate(lines):
        if line == ending:  # the empty line: what follows is the body
            if current:
                fields.append(_field(current))
            return unixfrom, fields, "".join(lines[number + 1:])
        if line[0] in " \t":
            if not current:
                return None  # a continuation with no field to continue
            current.append(line)
            continue
        if line.startswith("From "):
            if number != 0:
                return None
            unixfrom = line[:-len(ending)] if line.endswith(ending) else line
            continue
        if not _FIELD_START.match(line):
            return None
        if current:
            fields.append(_field(current))
        current = [line]
    if current:
        fields.append(_field(current))
    return unixfrom, fields, ""


def _field(lines: list[str]) -> tuple[str, str]:
    """_field - (name, value) of one field's lines, as ``compat32`` stores them."""
    name, value = lines[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(lines[1:])
    return name, value.rstrip("\r\n")


def unfold(value: str) -> str:
    """unfold - a header value with its folding line ends taken out."""
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def decode_words(value: str) -> str:
    """decode_words - a header value as text: unfolded, RFC 2047 words decoded."""
    value = _clean(unfold(value))
    if "=?" in value:
        try:
            value = str(_header_class("x-unstructured")("x-unstructured", value))
        except Exception:
            pass
    return value


@functools.lru_cache(maxsize=64)
def _header_class(name: str) -> type[BaseHeader]:
    """_header_class - the ``policy.default`` class of a header name, built once.

    ``policy.default.header_factory(name, value)`` builds a new class at every
    call and then instantiates it; the class depends on the name alone.
    """
    return policy.default.header_factory[name]


def _clean(text: str) -> str:
    """_clean - undo surrogate escapes of raw 8-bit bytes as UTF-8 (RFC 6532)."""
    if _ESCAPED_BYTE.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def decode_transfer(body: bytes, encoding: str, defects: list[str]) -> bytes:
    """decode_transfer - undo base64 or quoted-printable (RFC 2045 section 6)."""
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", body)
        compact = compact.split(b"=", 1)[0] if b"=" in compact[:-2] else compact
        try:
            return base64.b64decode(compact + b"=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            defects.append("BASE64_INVALID")
            usable = len(compact) - len(compact) % 4
            try:
                return base64.b64decode(compact[:usable])
            except (binascii.Error, ValueError):
                return b""
    if encoding == "quoted-printable":
        return binascii.a2b_qp(body)
    defects.append(f"UNKNOWN_TRANSFER_ENCODING:{encoding[:40]}")
    return body


def decode_charset(data: bytes, charset: str, defects: list[str]) -> str:
    """decode_charset - text from bytes; an unknown charset falls back to UTF-8."""
    charset = charset.strip().strip('"').lower() or "us-ascii"
    if charset in ("us-ascii", "ascii", "ansi_x3.4-1968"):
        charset = "utf-8"  # 8-bit bytes in a part labelled ASCII are common
    codec = text_codec(charset)
    if codec is None:
        shown = "".join(c if c.isprintable() else "?" for c in charset[:40])
        defects.append(f"UNKNOWN_CHARSET:{shown}")
    charset = codec or "utf-8"
    if not _ascii_compatible(charset) and b"\x00" not in data:
        # EBCDIC, UTF-16 or UTF-32 declared for text that is plain UTF-8: decoded
        # as declared it is noise to us and to the checks (its links vanish),
        # while many readers show the bytes as they are.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            defects.append(f"CHARSET_MISMATCH:{charset[:40]}")
            return text
    try:
        return data.decode(charset, errors="replace")
    except Exception:  # some codecs raise on odd input even with "replace"
        return data.decode("utf-8", errors="replace")


# Python codecs that a lookup finds but that are no MIME charset: they raise
# on ordinary text ("undefined", "idna" on a long line) or turn it into
# something no mail reader reads as that text.
_NOT_CHARSETS = frozenset({"undefined", "idna", "punycode", "unicode-escape",
                           "raw-unicode-escape", "unicode-internal"})


@functools.lru_cache(maxsize=256)
def text_codec(charset: str) -> str | None:
    """text_codec - the Python codec for a charset a message names, or None.

    None for a name Python does not know, one it cannot even look up (a NUL
    in it), a bytes-to-bytes codec (base64, zlib) and the codecs of
    ``_NOT_CHARSETS``. A codec returned here encodes and decodes text.
    """
    charset = (charset or "").strip().strip('"').lower()
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return "utf-8" if info.name == "utf-8-sig" else info.name


@functools.lru_cache(maxsize=256)
def _ascii_compatible(charset: str) -> bool:
    """_ascii_compatible - the charset writes ASCII text as ASCII bytes."""
    sample = "From: <a href=http://x.example/>"
    try:
        return sample.encode(charset) == sample.encode("ascii")
    except (UnicodeError, LookupError, ValueError):
        return False


def first_of(raw: bytes, needles: tuple[bytes, ...]) -> int:
    """first_of - where the first of the needles occurs in raw, or -1.

    Each search stops where an earlier needle was found, so a CRLF message
    is not scanned to its end for a bare LF pair it does not have.
    """
    first = -1
    for needle in needles:
        found = raw.find(needle, 0, first + len(needle) - 1 if first >= 0 else len(raw))
        if found >= 0:
            first = found
    return first


def _header_end(buffer: bytes, start: int, end: int) -> int:
    """_header_end - offset of the body: after the first empty line."""
    if buffer.startswith(CRLF, start):
        return start + 2
    blank = buffer.find(CRLF + CRLF, start, end)
    return end if blank < 0 else blank + 4


class _Counter:
    def __init__(self, limit: int) -> None:
        self.left = limit


def parse(buffer: bytes, limits: Limits = Limits()) -> Entity:
    """parse - the MIME tree of canonical (CRLF) message bytes."""
    counter = _Counter(limits.max_parts)
    root = _entity(buffer, 0, len(buffer), 0, "", limits, counter, None, "text/plain", True)
    return root


def _entity(buffer: bytes, start: int, end: int, depth: int, path: str,
            limits: Limits, counter: _Counter, parent: Entity | None,
            default_type: str, spliceable: bool) -> Entity:
    counter.left -= 1
    entity = Entity(buffer, start, _header_end(buffer, start, end), end, depth, path,
                    spliceable=spliceable, parent=parent, default_type=default_type)
    if entity.body_start == end and not buffer.startswith(CRLF, start):
        entity.defects.append("NO_BODY")
    if entity.is_multipart:
        _parse_multipart(entity, limits, counter)
    elif entity.content_type in ("message/rfc822", "message/global"):
        _parse_embedded(entity, limits, counter)
    return entity


def _parse_embedded(entity: Entity, limits: Limits, counter: _Counter) -> None:
    if entity.depth + 1 > limits.max_depth or counter.left <= 0:
        entity.defects.append("MIME_TOO_DEEP" if counter.left > 0 else "MIME_TOO_MANY_PARTS")
        return
    path = f"{entity.path}.1" if entity.path else "1"
    if entity.transfer_encoding in IDENTITY_ENCODINGS:
        child = _entity(entity.buffer, entity.body_start, entity.end, entity.depth + 1,
                        path, limits, counter, entity, "text/plain", entity.spliceable)
    else:
        inner, _ = canonicalize(entity.payload)
        child = _entity(inner, 0, len(inner), entity.depth + 1, path, limits, counter,
                        entity, "text/plain", False)
    entity.children.append(child)


def _delimiters(buffer: bytes, start: int, end: int, boundary: bytes):
    """_delimiters - (line start, line end, is close) of each delimiter line.

    RFC 2046 section 5.1.1: a delimiter is ``--boundary`` at the start of a
    line, then optional linear white space (transport padding), then CRLF;
    the close delimiter has ``--`` right after the boundary.
    """
    marker = b"--" + boundary
    position = start
    while True:
        found = buffer.find(marker, position, end)
        if found < 0:
            return
        position = found + len(marker)
        if found != start and buffer[found - 2:found] != CRLF:
            continue
        cursor = found + len(marker)
        closing = buffer.startswith(b"--", cursor, end)
        if closing:
            cursor += 2
        while cursor < end and buffer[cursor] in b" \t":
            cursor += 1
        if cursor == end:
            yield found, end, closing
            return
        if buffer.startswith(CRLF, cursor):
            yield found, cursor + 2, closing
            if closing:
                return
            position = cursor + 2


def _parse_multipart(entity: Entity, limits: Limits, counter: _Counter) -> None:
    boundary = entity.param("boundary")
    if not boundary or len(boundary) > 200:
        entity.defects.append("MULTIPART_NO_BOUNDARY")
        return
    if entity.depth + 1 > limits.max_depth:
        entity.defects.append("MIME_TOO_DEEP")
        return
    child_type = "message/rfc822" if entity.subtype == "digest" else "text/plain"
    marks = list(_delimiters(entity.buffer, entity.body_start, entity.end,
                             boundary.encode("utf-8", "surrogateescape")))
    if not marks:
        entity.defects.append("MULTIPART_NO_DELIMITER")
        return
    if not marks[-1][2]:
        entity.defects.append("MULTIPART_NO_CLOSE_DELIMITER")
    for number, (line_start, line_end, closing) in enumerate(marks, start=1):
        if closing:
            break
        if counter.left <= 0:
            entity.defects.append("MIME_TOO_MANY_PARTS")
            break
        following = marks[number][0] if number < len(marks) else entity.end
        part_end = following - 2 if number < len(marks) else entity.end
        part_end = max(part_end, line_end)
        path = f"{entity.path}.{number}" if entity.path else str(number)
        entity.children.append(_entity(entity.buffer, line_end, part_end, entity.depth + 1,
                                       path, limits, counter, entity, child_type,
                                       entity.spliceable))
