"""URL extraction: every link a reader could follow, with where it was found.

Links are looked for where a person or a mail client would see them:

- text parts: URLs with a scheme, bare ``www.`` hosts, ``host.tld/path``
  without a scheme, URLs in angle brackets (which may be wrapped over lines,
  RFC 3986 appendix C); the part is read after its transfer encoding is
  undone, so quoted-printable soft line breaks no longer split a URL;
- HTML parts: the targets of links, image maps, forms, frames, images,
  ``srcset``, ``meta refresh``, CSS ``url()``, SVG ``xlink:href``, resolved
  against the first ``<base href>`` as a browser resolves them; attribute
  values are read as the HTML parser decodes them (entities undone, the
  first of duplicated attributes kept); ``javascript:``, ``vbscript:`` and
  navigable ``data:`` URIs are kept aside as findings; the visible and the
  hidden text are searched as text parts are, and the markup itself for
  what the parser drops (a tag cut off at the end, comments, scripts);
- attachments and archive members (the message's file tree): PDF, Office
  OOXML, HTML and SVG files, calendar invitations, Internet shortcuts, text
  files (``urls.documents``), and QR codes in images, in PDF pages and in
  inline ``data:`` images (``urls.qr``).

Every URL is normalised as a browser would open it (``urls.normalize``).
The result is one de-duplicated list per message plus each place a URL was
seen, with the anchor text shown for it.

SECURITY: a message can hold any number of links in any size of markup.
Each part's text is cut before it is searched, at most ``max_urls`` distinct
URLs are kept (the cut is recorded as the defect ``URLS_TRUNCATED``), and
the places kept per message are bounded too.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator

from ada_url import join_url
from publicsuffixlist import PublicSuffixList

from mailward import htmltext
from mailward.urls.normalize import (
    ParsedUrl,
    parse_url,
    scheme_of,
    strip_invisible,
    trim_trailing,
    url_host,
)

if TYPE_CHECKING:
    from mailward.message import Message

log = logging.getLogger("mailward.urls")

MAX_URLS = 1000
MAX_TEXT_CHARS = 4_000_000
MAX_ANCHOR_TEXT = 300
SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "data"})

# A URL with a scheme, or a www host: "http" at the start of a word, or "www"
# not after a word, "@", "." or "-". The first letter is matched case by case
# (no other character is h or w to re.IGNORECASE) and the assertions about
# the character before come after it, so that re skips ahead to an h or a w
# instead of trying the assertions at every position of the text.
_TEXT_URL = re.compile(r"(?i)(?-i:[hHwW])(?:(?<=[hH])(?<!\w.)ttps?:(?://|\\\\)"
                       r"|(?<=[wW])(?<![\w@.-].)ww\d{0,3}\.)"
                       r"[^\s<>\"'`\x00-\x1f\x7f]{1,8192}")
_BRACKETED = re.compile(r"(?i)<(?:URL:)?\s*(https?://[^<>\x00]{1,8192}?)>")
_BARE_HOST = re.compile(r"(?i)(?<![\w@./:-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,8}"
                        r"([a-z]{2,24}))(/[^\s<>\"'`\x00-\x1f\x7f]{0,8192})")
# Where a bare host can be: its start (the host and the slash after it), and
# the dot, top-level domain and slash it ends with. Its labels with their
# dots are at most 8 * 64 characters, so it starts at most this far before
# that dot.
_BARE_HOST_START = re.compile(r"(?i)(?<![\w@./:-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)"
                              r"{1,8}[a-z]{2,24}/")
_TLD_SLASH = re.compile(r"(?i)\.[a-z]{2,24}/")
_BARE_HOST_REACH = 8 * 64 - 1
_CSS_URL = re.compile(r"""(?i)url\(\s*(['"]?)([^'")]{1,8192})\1\s*\)"""
                      r"""|@import\s+(['"])([^'"]{1,8192})\3""")
_REFRESH_URL = re.compile(r"""(?i)url\s*=\s*['"]?([^'"\s>]{1,8192})""")
_LINK_ATTRIBUTES = ("href", "src", "action", "formaction", "background", "data", "poster",
                    "xlink:href")
_NAVIGABLE = frozenset({"a", "area", "form", "button", "input", "iframe", "frame", "embed",
                        "object", "meta"})
_PSL = PublicSuffixList(accept_unknown=False)
_NONE = ParsedUrl("", "", "", "", "", False, False)
_RESERVED_TLDS = frozenset({"example", "test"})  # RFC 2606: documentation and tests


@dataclass(frozen=True, slots=True)
class ExtractedUrl:
    """One normalised URL and where in the message it was found.

    ``where`` names the place (``text``, ``html:a[href]``,
    ``attachment:pdf:annotation``, ``qr:image``...), ``part`` the MIME part
    or the file path, ``raw`` the URL as written (transfer encoding and
    entities undone), ``text`` the anchor text a reader sees for it.
    """

    url: str
    where: str
    part: str
    raw: str = ""
    text: str = ""
    userinfo: str = ""
    ip_obfuscated: bool = False

    @property
    def host(self) -> str:
        """host - the URL's host as A-labels."""
        return url_host(self.url)


@dataclass(frozen=True, slots=True)
class ScriptUri:
    """A ``javascript:``, ``vbscript:`` or navigable ``data:`` URI: a finding, not a link."""

    scheme: str
    value: str
    where: str
    part: str


@dataclass(slots=True)
class Extraction:
    """Everything extraction found in one message."""

    urls: list[ExtractedUrl] = field(default_factory=list)
    places: list[ExtractedUrl] = field(default_factory=list)
    scripts: list[ScriptUri] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """A string that may be a URL, before normalisation."""

    raw: str
    where: str
    text: str = ""


# Text.


def text_candidates(text: str, where: str = "text", bare: bool = True) -> Iterator[Candidate]:
    """text_candidates - URL-looking strings of plain text, left to right.

    ``bare`` also looks for ``host.tld/path`` without a scheme or ``www.``.
    """
    text = strip_invisible(text[:MAX_TEXT_CHARS])
    brackets: list[tuple[int, int]] = []
    if "<" in text:
        for match in _BRACKETED.finditer(text):
            brackets.append(match.span())
            yield Candidate(re.sub(r"\s+", "", match.group(1)), where)
    starts: list[int] = []
    ends: list[int] = []
    for match in _TEXT_URL.finditer(text):
        if brackets and _inside(match.start(), brackets):
            continue
        starts.append(match.start())
        ends.append(match.end())
        yield Candidate(trim_trailing(match.group(0)), where)
    if not bare or "/" not in text:
        return
    for match in bare_hosts(text):
        index = bisect.bisect_right(starts, match.start()) - 1
        if index >= 0 and match.start() < ends[index]:
            continue
        if (brackets and _inside(match.start(), brackets)) or not is_tld(match.group(2)):
            continue
        yield Candidate("http://" + trim_trailing(match.group(0)), f"{where}:no-scheme")


def bare_hosts(text: str) -> Iterator[re.Match[str]]:
    """bare_hosts - the matches of _BARE_HOST in the text, as finditer gives them.

    Only the stretch before each ".tld/" is searched for a start, and each
    stretch once: a host cannot run across the slash of another ".tld/".
    """
    position = 0  # no match starts before this
    floor = 0  # nor does one before this end at a later ".tld/"
    for anchor in _TLD_SLASH.finditer(text):
        dot, end = anchor.span()
        if dot < position:
            continue
        start = _BARE_HOST_START.search(text, max(position, floor, dot - _BARE_HOST_REACH), end)
        floor = end
        if start is not None:
            match = _BARE_HOST.match(text, start.start())
            assert match is not None
            yield match
            position = match.end()


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    """_inside - the position falls in one of the spans."""
    return any(start <= position < end for start, end in spans)


def is_tld(tld: str) -> bool:
    """is_tld - a top-level domain on the Public Suffix List (so not a file name)."""
    tld = tld.lower()
    return tld in _RESERVED_TLDS or _PSL.publicsuffix(f"x.{tld}") == tld


def unfold_ical(text: str) -> str:
    """unfold_ical - undo RFC 5545 section 3.1 line folding (CRLF + one space)."""
    return re.sub(r"\r?\n[ \t]", "", text)


# HTML.


def html_candidates(html: str, where: str = "html") -> tuple[list[Candidate], list[ScriptUri]]:
    """html_candidates - link targets in HTML, resolved against <base href>."""
    tree = htmltext.parse(html, MAX_TEXT_CHARS)
    base = ""
    for node in tree.css("base[href]"):
        base = (node.attributes.get("href") or "").strip()
        break
    found: list[Candidate] = []
    scripts: list[ScriptUri] = []
    selector = ",".join(f"[{name.replace(':', chr(92) + ':')}]" for name in _LINK_ATTRIBUTES)
    for node in tree.css(selector + ",[srcset],[style],meta[http-equiv]"):
        tag = (node.tag or "").lower()
        attributes = node.attributes
        anchor = _anchor_text(node) if tag in ("a", "area") else ""
        for name in _LINK_ATTRIBUTES:
            value = attributes.get(name)
            if value:
                _add(found, scripts, value, base, f"{where}:{tag}[{name}]", tag, anchor)
        if attributes.get("srcset"):
            for item in (attributes.get("srcset") or "").split(","):
                _add(found, scripts, item.strip().split(" ")[0], base,
                     f"{where}:{tag}[srcset]", tag, "")
        if attributes.get("style"):
            for value in _css_urls(attributes.get("style") or ""):
                _add(found, scripts, value, base, f"{where}:css", tag, "")
        if tag == "meta" and (attributes.get("http-equiv") or "").lower() == "refresh":
            match = _REFRESH_URL.search(attributes.get("content") or "")
            if match:
                _add(found, scripts, match.group(1), base, f"{where}:meta[refresh]", tag, "")
    for node in tree.css("style"):
        for value in _css_urls(node.text() or ""):
            _add(found, scripts, value, base, f"{where}:css", "style", "")
    return found, scripts


def _anchor_text(node) -> str:
    """_anchor_text - the text a reader sees for a link (or its image's alt)."""
    text = node.text(deep=True, separator=" ") or node.attributes.get("alt") or ""
    return " ".join(strip_invisible(text).split())[:MAX_ANCHOR_TEXT]


def _css_urls(css: str) -> Iterator[str]:
    """_css_urls - the url() and @import targets of a style sheet."""
    for match in _CSS_URL.finditer(css[:MAX_TEXT_CHARS]):
        yield (match.group(2) or match.group(4) or "").strip()


def _add(found: list[Candidate], scripts: list[ScriptUri], value: str, base: str,
         where: str, tag: str, anchor: str) -> None:
    """_add - one attribute value: a script URI, or a link resolved against base."""
    value = value.strip()
    scheme = scheme_of(value)
    if scheme in SCRIPT_SCHEMES:
        if scheme != "data" or tag in _NAVIGABLE or value[5:15].lower().startswith("text/h"):
            scripts.append(ScriptUri(scheme, value[:500], where, ""))
        return
    if not value or value.startswith("#") or (scheme and scheme not in ("http", "https")):
        return
    if base and not scheme and not value.startswith("//"):
        try:
            value = join_url(base, value)
        except ValueError:
            return
    elif not scheme and not value.startswith(("//", "\\\\", "www", "WWW")):
        return  # a relative link with no base: it leads nowhere from a mail client
    found.append(Candidate(value, where, anchor))


# The whole message.


def extract(message: "Message", max_urls: int = MAX_URLS) -> Extraction:
    """extract - every URL of the message, normalised, with each place it was found."""
    from mailward.urls import documents, qr

    result = Extraction()
    seen: dict[str, ExtractedUrl] = {}
    max_places = max_urls * 4

    def take(candidates: Iterable[Candidate], part: str) -> None:
        """take - normalise candidates and keep them within the bounds."""
        for candidate in candidates:
            if result.truncated and len(result.places) >= max_places:
                return
            parsed = parse_url(candidate.raw)
            if parsed is None:
                continue
            if parsed.url not in seen and len(seen) >= max_urls:
                result.truncated = True
                continue
            found = _found(parsed, candidate, part)
            if parsed.url not in seen:
                seen[parsed.url] = found
            if len(result.places) < max_places:
                result.places.append(found)
            inner = unwrap(parsed.href)
            if inner and not candidate.where.endswith(":unwrapped"):
                take([Candidate(inner, candidate.where + ":unwrapped", candidate.text)], part)

    for entity in message.text_parts:
        take(text_candidates(entity.text), entity.path)
    for entity, rendered in zip(message.html_parts, message.rendered_html):
        candidates, scripts = html_candidates(entity.text)
        take(candidates, entity.path)
        result.scripts.extend(ScriptUri(s.scheme, s.value, s.where, entity.path)
                              for s in scripts)
        take(text_candidates(rendered.visible, "html:text"), entity.path)
        take(text_candidates(rendered.hidden, "html:hidden-text"), entity.path)
        # What the parser drops (a tag cut off at the end, comments, scripts)
        # is no link for the reader, but still evidence for reputation.
        take((c for c in text_candidates(entity.text, "html:source", bare=False)
              if (parse_url(c.raw) or _NONE).url not in seen),
             entity.path)
        take((Candidate(url, "qr:inline-data-image") for url in qr.data_image_urls(
            entity.text)), entity.path)
    for node, candidates, scripts in documents.file_candidates(message):
        take(candidates, node.path)
        result.scripts.extend(ScriptUri(s.scheme, s.value, s.where, node.path)
                              for s in scripts)
    result.urls = list(seen.values())
    if result.truncated:
        message.defects.append("URLS_TRUNCATED")
    return result


def unwrap(href: str) -> str | None:
    """unwrap - the link inside a rewritten link (ours, Safe Links, Google), or None.

    A copy that was delivered (and is reported or re-scanned later) carries
    rewritten links; the destination is what must be judged.
    """
    head, _, query = href.partition("?")
    if not query:
        return None
    if "/u/1." in head and query.startswith(("u=", "go=1&u=")):
        from mailward.urls.signing import url_from_query

        return url_from_query(query.removeprefix("go=1&")) or None
    host = head.split("//", 1)[-1].split("/", 1)[0].lower()
    if host.endswith(".safelinks.protection.outlook.com") or (
            host.startswith(("www.google.", "google.")) and head.endswith("/url")):
        from urllib.parse import parse_qs

        values = parse_qs(query[:MAX_TEXT_CHARS])
        for key in ("url", "q"):
            if values.get(key) and values[key][0].lower().startswith(("http:", "https:")):
                return values[key][0]
    return None


def _found(parsed: ParsedUrl, candidate: Candidate, part: str) -> ExtractedUrl:
    """_found - the record of one place a URL was found."""
    return ExtractedUrl(parsed.url, candidate.where, part, raw=candidate.raw[:2048],
                        text=candidate.text, userinfo=parsed.userinfo,
                        ip_obfuscated=parsed.ip_obfuscated)


def extract_urls(message: "Message") -> list[ExtractedUrl]:
    """extract_urls - the message's distinct URLs (the ``Message.urls`` view)."""
    return message.url_extraction.urls
