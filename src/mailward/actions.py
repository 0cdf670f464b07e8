"""What the gateway writes into delivered mail: verdict headers and banners.

The delivered bytes are the original bytes plus what is added here, and
nothing else: headers are prepended (never re-folded, so no address header
can turn into two), and a banner is spliced into the body of each readable
text and HTML part by its byte range, re-encoded with that part's own
transfer encoding and charset. Parts under a signature or encryption
(multipart/signed, multipart/encrypted, S/MIME) are left alone, since
changing them would break the signature. A part rewriter (the links of
``urls.rewrite``) changes a part's decoded payload; the part is then
re-encoded with its own transfer encoding, or as quoted-printable where a
rewritten line would pass the 998-octet limit of a 7bit or 8bit part.

SECURITY: X-Mailward-* headers that arrive with a message are forged
verdicts; they are removed before ours are added.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from typing import Callable

from mailward.message import Message
from mailward.mime import CRLF, IDENTITY_ENCODINGS, Entity, _header_end, text_codec
from mailward.verdict import Action, Category, Verdict

_OWN_HEADER = re.compile(rb"(?im)^x-mailward-[a-z-]*:.*(?:\r\n[ \t].*)*\r\n")
_BODY_TAG = re.compile(rb"(?is)<body\b[^>]*>")
_SIGNED_TYPES = {"multipart/signed", "multipart/encrypted", "application/pkcs7-mime",
                 "application/x-pkcs7-mime"}
_REASONS = {Category.SPAM: "it looks like spam", Category.PHISH: "it may be phishing",
            Category.MALWARE: "it may carry something dangerous",
            Category.IMPOSTOR: "the sender may be impersonating someone",
            Category.AUTH: "the sender could not be verified",
            Category.POLICY: "it is unusual in form"}


def fold(name: str, value: str) -> bytes:
    """fold - one header field, folded at white space near 78 columns."""
    value = re.sub(r"[\r\n]+", " ", value)
    lines = textwrap.wrap(f"{name}: {value}", width=78, break_long_words=False,
                          break_on_hyphens=False, subsequent_indent=" ") or [f"{name}:"]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def strip_own_headers(raw: bytes, body_start: int) -> bytes:
    """strip_own_headers - remove X-Mailward-* fields from the top header block."""
    head = raw[:body_start]
    cleaned = _OWN_HEADER.sub(b"", head)
    return cleaned + raw[body_start:] if cleaned != head else raw


def prepend_headers(raw: bytes, fields: list[tuple[str, str]]) -> bytes:
    return b"".join(fold(name, value) for name, value in fields) + raw


def verdict_headers(queue_id: str, verdict: Verdict) -> list[tuple[str, str]]:
    fields = [("X-Mailward-Queue-Id", queue_id), ("X-Mailward-Verdict", verdict.header_value())]
    if verdict.action == Action.TAG and verdict.category == Category.SPAM:
        fields.append(("X-Spam-Flag", "YES"))
    return fields


@dataclass(frozen=True, slots=True)
class Banner:
    """A warning banner; ``link`` is the recipient's signed "Report phishing" link."""

    text: str
    link: str = ""

    def plain(self) -> str:
        wrapped = textwrap.fill(self.text, width=76)
        report = f"\nReport phishing: {self.link}" if self.link else ""
        return f"{wrapped}{report}\n{'-' * 40}\n\n".replace("\n", "\r\n")

    def html(self) -> str:
        report = ""
        if self.link:
            report = (f' <a href="{html.escape(self.link, quote=True)}" '
                      'style="color:#5d2e00;font-weight:bold">Report phishing</a>')
        return ('<table role="presentation" width="100%" cellpadding="8" cellspacing="0" '
                'style="border:1px solid #c60;background:#fff3e0;margin:0 0 12px 0">'
                '<tr><td style="font-family:sans-serif;font-size:13px;color:#5d2e00">'
                f"{html.escape(self.text)}{report}</td></tr></table>\r\n")


def banner_text(verdict: Verdict, external_text: str, suspicious_text: str) -> str:
    """banner_text - the wording for the reason the message is tagged."""
    suspicious = [c for c, v in sorted(verdict.categories.items(), key=lambda kv: -kv[1])
                  if v > 0 and Category(c) in _REASONS and c != Category.POLICY]
    external = verdict.has("EXTERNAL_SENDER")
    if not suspicious:
        return external_text if external else suspicious_text.format(
            reasons=_REASONS[Category.POLICY])
    reasons = " and ".join(_REASONS[Category(c)] for c in suspicious[:2])
    text = suspicious_text.format(reasons=reasons)
    return f"{external_text} {text}" if external else text


def _protected(entity: Entity) -> bool:
    node: Entity | None = entity
    while node is not None:
        if node.content_type in _SIGNED_TYPES:
            return True
        node = node.parent
    return False


def _encode_text(text: str, charset: str) -> bytes:
    """_encode_text - the banner in the part's charset, else as plain ASCII.

    A charset that is no usable text codec (unknown, a NUL in its name,
    "undefined", "idna") or that cannot write the banner gets the banner as
    ASCII, which every ASCII-based reading shows as it is; this never raises.
    """
    codec = text_codec(charset or "us-ascii")
    if codec is not None:
        try:
            return text.encode(codec)
        except (UnicodeError, LookupError, ValueError):
            pass
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore")


def _wide(charset: str) -> bool:
    """_wide - a charset whose ASCII is not ASCII bytes (UTF-16, UTF-32): no banner."""
    name = text_codec(charset) or charset
    return name.startswith(("utf-16", "utf-32", "ucs"))


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data.replace(CRLF, b"\n"), istext=True).replace(b"\n", CRLF)


def _insert(payload: bytes, added: bytes, is_html: bool) -> bytes:
    """_insert - put the banner after <body ...>, or first."""
    match = _BODY_TAG.search(payload) if is_html else None
    position = match.end() if match else 0
    return payload[:position] + added + payload[position:]


def _new_body(entity: Entity, banner: Banner) -> bytes | None:
    """_new_body - the part's body with the banner, in the part's own encoding.

    The splice works on bytes, so no byte of the original text goes through a
    decode and re-encode that could change it; only the banner is encoded,
    in the part's charset.
    """
    encoding = entity.transfer_encoding
    if encoding not in IDENTITY_ENCODINGS | {"base64", "quoted-printable"}:
        return None
    if _wide(entity.charset):
        return None
    is_html = entity.content_type == "text/html"
    added = _encode_text(banner.html() if is_html else banner.plain(), entity.charset)
    if encoding in IDENTITY_ENCODINGS:
        return _insert(entity.body, added, is_html)
    if encoding == "quoted-printable":
        if not is_html or _BODY_TAG.search(entity.body):
            return _insert(entity.body, _qp(added), is_html)
        return _qp(_insert(entity.payload, added, is_html))
    encoded = base64.encodebytes(_insert(entity.payload, added, is_html)).replace(b"\n", CRLF)
    return encoded if entity.body.endswith(CRLF) else encoded.rstrip(CRLF)


def add_banner(message: Message, banner: Banner) -> bytes:
    """add_banner - the raw message with the banner in each readable body part."""
    return edit_parts(message, banner, None)


# A part rewriter takes a readable part and returns its new decoded payload,
# or None to leave it as it is (URL rewriting, ``urls.rewrite``).
PartRewriter = Callable[[Entity], "bytes | None"]
_CTE_HEADER = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*(?:\r\n[ \t].*)*\r\n")
_MAX_LINE = 998  # RFC 5322 section 2.1.1


def edit_parts(message: Message, banner: Banner | None, rewrite: PartRewriter | None) -> bytes:
    """edit_parts - the raw message with each readable part rewritten and bannered."""
    edits: list[tuple[int, int, bytes]] = []
    for entity in message.text_parts + message.html_parts:
        if not entity.spliceable or _protected(entity):
            continue
        edit = _edit(entity, banner, rewrite)
        if edit is not None:
            edits.append(edit)
    raw = message.raw
    for start, end, body in sorted(edits, reverse=True):
        raw = raw[:start] + body + raw[end:]
    return raw


def _edit(entity: Entity, banner: Banner | None,
          rewrite: PartRewriter | None) -> tuple[int, int, bytes] | None:
    """_edit - the (start, end, bytes) splice of one part, or None."""
    payload = rewrite(entity) if rewrite is not None else None
    if payload is None:
        body = _new_body(entity, banner) if banner is not None else None
        return None if body is None else (entity.body_start, entity.end, body)
    encoding = entity.transfer_encoding
    if encoding not in ("base64", "quoted-printable"):
        encoding = ""  # an unknown encoding was read as raw bytes; it is spliced as such
    is_html = entity.content_type == "text/html"
    if banner is not None and not _wide(entity.charset):
        added = _encode_text(banner.html() if is_html else banner.plain(), entity.charset)
        payload = _insert(payload, added, is_html)
    if encoding == "base64":
        body = base64.encodebytes(payload).replace(b"\n", CRLF)
        return entity.body_start, entity.end, body if entity.body.endswith(CRLF) else body.rstrip(CRLF)
    if encoding in IDENTITY_ENCODINGS and max(map(len, payload.split(CRLF)), default=0) <= _MAX_LINE:
        return entity.body_start, entity.end, payload
    # Quoted-printable, or an identity part whose rewritten lines grew past the
    # line limit: the part becomes quoted-printable, with its header saying so.
    body = _qp(payload)
    if encoding == "quoted-printable":
        return entity.body_start, entity.end, body
    header = entity.buffer[entity.start:entity.body_start]
    return entity.start, entity.end, _with_qp_header(header) + body


def _with_qp_header(header: bytes) -> bytes:
    """_with_qp_header - a part header that declares quoted-printable, else unchanged."""
    line = b"Content-Transfer-Encoding: quoted-printable\r\n"
    if _CTE_HEADER.search(header):
        return _CTE_HEADER.sub(lambda _: line, header, count=1)
    if header.endswith(CRLF + CRLF):
        return header[:-2] + line + CRLF
    return header + line if header else line + CRLF


def render(message: Message, verdict: Verdict, queue_id: str, *,
           external_text: str, suspicious_text: str,
           extra_headers: list[tuple[str, str]] | None = None,
           rewrite: PartRewriter | None = None, report_link: str = "") -> bytes:
    """render - the bytes to deliver for a DELIVER or TAG verdict.

    Every warning banner carries ``report_link`` (the recipient's signed
    "Report phishing" link) when one is given.
    """
    raw = message.raw
    banner = None
    if verdict.action == Action.TAG:
        banner = Banner(banner_text(verdict, external_text, suspicious_text), report_link)
    if banner is not None or rewrite is not None:
        raw = edit_parts(message, banner, rewrite)
    raw = strip_own_headers(raw, _header_end(raw, 0, len(raw)))
    fields = (verdict_headers(queue_id, verdict) + list(extra_headers or [])
              + list(verdict.headers))
    return prepend_headers(raw, fields)
