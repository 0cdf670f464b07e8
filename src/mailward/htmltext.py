"""HTML to the text a reader sees, and the text hidden from the reader.

Classifiers must judge what a person reads, not what the sender salted the
markup with: content in ``display:none``, ``visibility:hidden``, zero font
size, zero opacity or comments is set aside as hidden text, which is itself
evidence of evasion.

SECURITY: the input is hostile HTML. It is parsed by lexbor (selectolax),
which is iterative and bounded in memory; the input is cut at a configured
size before parsing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])"
    r"|opacity\s*:\s*0(?![.\d]*[1-9])|max-height\s*:\s*0(?![.\d]*[1-9])"
    r"|(?<![-\w])height\s*:\s*0(?![.\d]*[1-9])[a-z%]*\s*;[^\"]*overflow\s*:\s*hidden",
    re.IGNORECASE)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_ANY_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e]")
# A run of spaces becomes one space; a lone " " is left as it is (the same
# result, without a replacement for every gap between two words).
_SPACES = re.compile(r"(?=[ \t\u00a0\u2000-\u200a\u3000])"
                     r"(?:[ \t\u00a0\u2000-\u200a\u3000]{2,}|[\t\u00a0\u2000-\u200a\u3000])")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_BLOCK_TAGS = ("p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
               "table", "blockquote", "section", "article", "header", "footer")
_BLOCK_SELECTOR = ", ".join(_BLOCK_TAGS)


@dataclass(frozen=True, slots=True)
class RenderedHtml:
    visible: str
    hidden: str
    hidden_pieces: int = 0


def normalize_text(text: str) -> str:
    """normalize_text - NFKC, no zero-width characters, collapsed spaces."""
    text = unicodedata.normalize("NFKC", text)
    if _ANY_INVISIBLE.search(text):
        text = text.translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def render(html: str, max_chars: int = 2_000_000) -> RenderedHtml:
    """render - the visible and the hidden text of an HTML document."""
    tree = LexborHTMLParser(html[:max_chars])
    hidden: list[str] = []
    for node in tree.css("script, style, head, noscript, template, title"):
        node.decompose()
    for node in tree.css("[style]"):
        style = node.attrs.get("style") or ""
        if _HIDDEN_STYLE.search(style):
            hidden.append(node.text(separator=" "))
            node.decompose()
    for node in tree.css("[hidden]"):
        hidden.append(node.text(separator=" "))
        node.decompose()
    for node in tree.css(_BLOCK_SELECTOR):
        node.insert_after("\n")
    root = tree.body or tree.root
    visible = root.text(separator="") if root is not None else ""
    pieces = sum(1 for piece in hidden if piece.strip())
    return RenderedHtml(normalize_text(visible), normalize_text(" ".join(hidden)), pieces)
