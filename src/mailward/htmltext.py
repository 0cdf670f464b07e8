"""HTML to the text a reader sees, and the text hidden from the reader.

Classifiers must judge what a person reads, not what the sender salted the
markup with: content in ``display:none``, ``visibility:hidden``, zero font
size, zero opacity or comments is set aside as hidden text, which is itself
evidence of evasion.

SECURITY: the input is hostile HTML. It is parsed by lexbor (selectolax),
which is iterative and bounded in memory; the input is cut at a configured
size before parsing. Lexbor's tree builder walks the stack of open elements
for many start tags (``<div>``, ``<ul>``, ...), so its time grows with the
square of the nesting depth or worse: a megabyte of ``<div>`` takes minutes.
``parse`` therefore first drops the start tags that would open an element
deeper than ``MAX_DEPTH``, in one linear pass; browsers cap the depth of the
trees they build in the same spirit.
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

# Nesting deeper than this is no layout a reader sees. Ordinary mail stays
# under 100 levels as counted here; mail salted with unclosed junk tags
# reaches a few hundred. At this depth a megabyte still parses in a second.
MAX_DEPTH = 1024
_MARKUP = re.compile(r"<(?:(/?)([A-Za-z][^\t\n\f\r />]*)|!--|[!?])")
# The rest of a tag after its name: attributes, quoted values kept whole.
_TAG_REST = re.compile(r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_VOID = frozenset(("area", "base", "br", "col", "embed", "hr", "img", "input", "keygen",
                   "link", "meta", "param", "source", "track", "wbr"))
# Start tags that never open an element of their own once the body has begun.
_MERGED = frozenset(("html", "head", "body"))
_RAW_TEXT = frozenset(("script", "style", "textarea", "title", "xmp", "iframe",
                       "noembed", "noframes", "noscript", "plaintext"))
# A start tag that ends an open element of one of these names (an implied end tag).
_CLOSES = {"p": ("p",), "li": ("li",), "dt": ("dt", "dd"), "dd": ("dt", "dd"),
           "tr": ("tr", "td", "th"), "td": ("td", "th"), "th": ("td", "th"),
           "option": ("option",), "optgroup": ("optgroup", "option"),
           "rp": ("rp", "rt"), "rt": ("rp", "rt")}


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


def cap_depth(html: str, max_depth: int = MAX_DEPTH) -> str:
    """cap_depth - the HTML without the start tags that open past max_depth.

    The open elements are tracked roughly (end tags, void elements, implied
    ends of ``<p>``, ``<li>``, table cells) in one pass; each element is
    opened and closed once, so the work is linear in the input. HTML that
    stays within the depth comes back as it was (the same object); text and
    end tags are always kept.
    """
    # No element opens without a start tag: with no more "<" than max_depth
    # besides those of end tags, no element can open past it.
    if html.count("<") - html.count("</") <= max_depth:
        return html
    open_tags: list[str] = []
    open_count: dict[str, int] = {}  # how many of open_tags bear each name
    kept: list[str] = []
    copied = 0  # html[:copied] is decided: kept, or dropped
    position = 0
    while (markup := _MARKUP.search(html, position)) is not None:
        slash, name = markup.group(1), markup.group(2)
        if name is None:  # a comment, <!doctype> or <?...>: skip over it
            ending = "-->" if markup.group(0) == "<!--" else ">"
            position = html.find(ending, markup.end())
            if position < 0:
                break
            position += len(ending)
            continue
        rest = _TAG_REST.match(html, markup.end())
        if rest is None:
            break  # a tag cut off by the end: the parser drops it
        position = rest.end()
        name = name.lower()
        if slash:
            if open_count.get(name):  # pop up to the element it ends
                while _pop(open_tags, open_count) != name:
                    pass
            continue
        if open_tags and open_tags[-1] in _CLOSES.get(name, ()):
            _pop(open_tags, open_count)
        if name in _RAW_TEXT:
            end = re.compile(f"</{re.escape(name)}[\\t\\n\\f\\r />]", re.IGNORECASE)
            close = end.search(html, position)
            if close is None:
                break
            position = close.start()
        elif len(open_tags) >= max_depth:
            kept.append(html[copied:markup.start()])
            copied = position
        elif (name not in _VOID and name not in _MERGED
              and not html.endswith("/>", markup.start(), position)):
            open_tags.append(name)
            open_count[name] = open_count.get(name, 0) + 1
    if not kept:
        return html
    kept.append(html[copied:])
    return "".join(kept)


def _pop(open_tags: list[str], open_count: dict[str, int]) -> str:
    """_pop - close the innermost open element; its name."""
    name = open_tags.pop()
    open_count[name] -= 1
    return name


def parse(html: str, max_chars: int) -> LexborHTMLParser:
    """parse - the lexbor tree of the first max_chars of the HTML, depth capped."""
    return LexborHTMLParser(cap_depth(html[:max_chars]))


def render(html: str, max_chars: int = 2_000_000) -> RenderedHtml:
    """render - the visible and the hidden text of an HTML document."""
    tree = parse(html, max_chars)
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
