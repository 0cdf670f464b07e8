"""URL extraction: every link a reader could follow, with where it was found.

Text parts give URLs with a scheme and bare ``www.`` hosts; HTML parts give
the targets of links, forms, frames and images, resolved against
``<base href>`` as a browser resolves them. The result is one normalised,
de-duplicated list per message.

SECURITY: a message can hold any number of links; at most ``MAX_URLS`` are
kept, and the cut is recorded as a defect of the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from selectolax.lexbor import LexborHTMLParser

from mailward.urls.normalize import normalize_url, url_host

if TYPE_CHECKING:
    from mailward.message import Message

MAX_URLS = 1000
_TEXT_URL = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"'`]+")
_HTML_LINKS = (("a", "href"), ("area", "href"), ("form", "action"),
               ("iframe", "src"), ("img", "src"))


@dataclass(frozen=True, slots=True)
class ExtractedUrl:
    """One normalised URL and where in the message it was found."""

    url: str
    where: str
    part: str

    @property
    def host(self) -> str:
        return url_host(self.url)


def _from_text(text: str) -> list[str]:
    return [match.group(0) for match in _TEXT_URL.finditer(text)]


def _from_html(html: str) -> list[tuple[str, str]]:
    tree = LexborHTMLParser(html[:4_000_000])
    base = tree.css_first("base[href]")
    base_href = (base.attributes.get("href") or "").strip() if base else ""
    found: list[tuple[str, str]] = []
    for tag, attribute in _HTML_LINKS:
        for node in tree.css(f"{tag}[{attribute}]"):
            value = (node.attributes.get(attribute) or "").strip()
            if value:
                found.append((urljoin(base_href, value) if base_href else value,
                              f"html:{tag}"))
    return found


def extract_urls(message: "Message") -> list[ExtractedUrl]:
    """extract_urls - the message's URLs, normalised and de-duplicated."""
    seen: dict[str, ExtractedUrl] = {}
    candidates: list[tuple[str, str, str]] = []
    for part in message.text_parts:
        candidates.extend((url, "text", part.path) for url in _from_text(part.text))
    for part in message.html_parts:
        candidates.extend((url, where, part.path) for url, where in _from_html(part.text))
    for part in message.attachments:
        if part.content_type == "text/html" or (part.filename or "").lower().endswith(
                (".html", ".htm", ".svg")):
            candidates.extend((url, f"attachment:{where}", part.path)
                              for url, where in _from_html(part.text))
    for raw, where, path in candidates:
        url = normalize_url(raw)
        if url is None or url in seen:
            continue
        if len(seen) >= MAX_URLS:
            message.defects.append("URLS_TRUNCATED")
            break
        seen[url] = ExtractedUrl(url, where, path)
    return list(seen.values())
