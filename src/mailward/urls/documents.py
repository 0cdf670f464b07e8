"""Links inside attached files: PDF, Office OOXML, HTML, SVG, calendar, shortcuts.

The files are the message's file tree (``Message.files``: attachments and
archive members, unpacked by ``attachments.files``). Each kind is read with
what its format defines as a link: PDF link annotations (``/URI`` and
``/Launch`` actions) and the text of its pages; OOXML relationships with
``TargetMode="External"`` (hyperlinks, but also remote templates and linked
objects that Office fetches by itself) and the text of the document parts;
HTML and SVG markup as HTML parts are read; calendar invitations after
RFC 5545 unfolding; ``[InternetShortcut]`` files by their ``URL=`` line;
other text files as text. QR codes in images and in PDF pages are decoded
by ``urls.qr``.

SECURITY: every file is hostile. Nothing is run or written to disk; PDF
pages, OOXML members and bytes read are bounded, and a file that a parser
cannot read is skipped (its other findings are the attachment checks').
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from typing import TYPE_CHECKING, Iterator

from mailward.urls import qr
from mailward.urls.extract import (
    Candidate,
    ScriptUri,
    html_candidates,
    text_candidates,
    unfold_ical,
)

if TYPE_CHECKING:
    from mailward.attachments.files import FileNode
    from mailward.message import Message

log = logging.getLogger("mailward.urls")

MAX_PDF_BYTES = 20 * 1024 * 1024
MAX_PDF_PAGES = 30
MAX_PDF_IMAGES = 10
MAX_OOXML_MEMBER = 4 * 1024 * 1024
MAX_OOXML_TOTAL = 16 * 1024 * 1024
MAX_OOXML_MEMBERS = 400
MAX_TEXT_FILE = 4 * 1024 * 1024

_HTML_NAMES = (".html", ".htm", ".shtml", ".xhtml", ".mht", ".mhtml", ".svg", ".svgz")
_TEXT_NAMES = (".txt", ".csv", ".md", ".log", ".xml", ".json", ".eml", ".webloc", ".vcf")
_RELATIONSHIP = re.compile(rb"<Relationship\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(rb"""\b(Target|TargetMode)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_XML_TAG = re.compile(rb"<[^>]{0,4096}>")
_SHORTCUT_URL = re.compile(r"(?im)^\s*(?:URL|IconFile)\s*=\s*(\S[^\r\n]*)")

Found = tuple["FileNode", list[Candidate], list[ScriptUri]]


def _name(node: "FileNode") -> str:
    """_name - the file name, lower-cased."""
    return (node.name or "").lower()


def is_pdf(node: "FileNode") -> bool:
    """is_pdf - a PDF by its header (ISO 32000-1 section 7.5.2, within 1 KiB)."""
    return b"%PDF-" in node.data[:1024]


def is_ooxml(node: "FileNode") -> bool:
    """is_ooxml - a zip with an OOXML content-types part (docx, xlsx, pptx...)."""
    if node.data[:4] != b"PK\x03\x04" or b"[Content_Types].xml" not in node.data:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(node.data)) as archive:
            return any(info.filename == "[Content_Types].xml"
                       for info in archive.infolist()[:MAX_OOXML_MEMBERS])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return False


def is_html(node: "FileNode") -> bool:
    """is_html - an HTML or SVG file by name, declared type or first bytes."""
    head = node.data[:1024].lstrip().lower()
    return (_name(node).endswith(_HTML_NAMES) or node.declared_type in ("text/html",
            "image/svg+xml", "application/xhtml+xml")
            or head.startswith((b"<!doctype html", b"<html", b"<svg", b"<?xml")) and b"<svg" in head
            or head.startswith((b"<!doctype html", b"<html")))


def is_calendar(node: "FileNode") -> bool:
    """is_calendar - an iCalendar file (RFC 5545) by name, type or first line."""
    return _name(node).endswith((".ics", ".ical", ".ifb")) or \
        node.declared_type == "text/calendar" or node.data[:15].upper() == b"BEGIN:VCALENDAR"


def is_shortcut(node: "FileNode") -> bool:
    """is_shortcut - a Windows Internet shortcut by name or section header."""
    return _name(node).endswith((".url", ".website")) or \
        node.data[:40].lstrip().lower().startswith(b"[internetshortcut]")


def _text(data: bytes) -> str:
    """_text - file bytes as text (UTF-16 by its BOM, else UTF-8), bounded."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data[:MAX_TEXT_FILE].decode("utf-16", "replace")
    return data[:MAX_TEXT_FILE].decode("utf-8", "replace")


def file_candidates(message: "Message") -> Iterator[Found]:
    """file_candidates - (file, link candidates, script URIs) for each file read."""
    images = 0
    covered: set[int] = set()
    for node in message.files:
        if id(node) in covered or not node.data:
            continue
        try:
            if is_ooxml(node):
                _cover(node, covered)
                yield node, list(ooxml_candidates(node.data)), []
            elif is_pdf(node):
                yield node, list(pdf_candidates(node.data)), []
            elif is_shortcut(node):
                yield node, list(shortcut_candidates(node.data)), []
            elif is_calendar(node):
                yield node, list(text_candidates(unfold_ical(_text(node.data)),
                                                 "attachment:ics")), []
            elif is_html(node):
                candidates, scripts = html_candidates(_text(node.data), "attachment:html")
                yield node, candidates, scripts
            elif qr.is_image(node.data) and images < qr.MAX_IMAGES:
                images += 1
                yield node, [Candidate(url, "qr:image") for url in qr.image_urls(node.data)], []
            elif node.declared_type.startswith("text/") or _name(node).endswith(_TEXT_NAMES):
                yield node, list(text_candidates(_text(node.data), "attachment:text")), []
        except Exception as error:  # a parser that is not proven total on hostile files
            log.info("links of %s not read: %s: %s", node.path[:200], type(error).__name__,
                     str(error)[:200])


def _cover(node: "FileNode", covered: set[int]) -> None:
    """_cover - mark a container's members as read with the container."""
    stack = list(node.children)
    while stack:
        child = stack.pop()
        covered.add(id(child))
        stack.extend(child.children)


# Office Open XML (ECMA-376 part 2: packaging conventions, relationships).


def ooxml_candidates(data: bytes) -> Iterator[Candidate]:
    """ooxml_candidates - external relationship targets, then URLs in the parts' text."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()[:MAX_OOXML_MEMBERS]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return
    budget = MAX_OOXML_TOTAL
    for info in infos:
        name = info.filename.lower()
        if not name.endswith((".rels", ".xml")) or info.file_size > MAX_OOXML_MEMBER \
                or info.file_size > budget:
            continue
        try:
            with archive.open(info) as member:
                content = member.read(MAX_OOXML_MEMBER + 1)[:MAX_OOXML_MEMBER]
        except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError,
                RuntimeError):
            continue
        budget -= len(content)
        if name.endswith(".rels"):
            yield from _relationships(content)
        else:
            text = _XML_TAG.sub(b" ", content).decode("utf-8", "replace")
            yield from text_candidates(_xml_unescape(text), "attachment:ooxml:text")


def _relationships(content: bytes) -> Iterator[Candidate]:
    """_relationships - targets of relationships with TargetMode External."""
    for match in _RELATIONSHIP.finditer(content):
        values = {m.group(1).decode(): (m.group(2) or m.group(3) or b"")
                  for m in _ATTRIBUTE.finditer(match.group(0))}
        if values.get("TargetMode", b"").lower() == b"external" and values.get("Target"):
            target = _xml_unescape(values["Target"].decode("utf-8", "replace"))
            yield Candidate(target, "attachment:ooxml:relationship")


def _xml_unescape(text: str) -> str:
    """_xml_unescape - XML character and entity references undone."""
    import html

    return html.unescape(text)


# PDF (ISO 32000-1 section 12.6.4.7, URI actions; 12.5.6.5, link annotations).


def pdf_candidates(data: bytes) -> Iterator[Candidate]:
    """pdf_candidates - link annotation targets, page text URLs, QR codes in page images.

    TODO: a QR code drawn with vector operators rather than embedded as an
    image is not seen, since pages are not rasterised; such a PDF hides its
    link from the QR decoder until a sandboxed renderer is added.
    """
    if len(data) > MAX_PDF_BYTES:
        return
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:
            return
    images = 0
    for number, page in enumerate(reader.pages):
        if number >= MAX_PDF_PAGES:
            break
        yield from _annotations(page)
        try:
            text = page.extract_text() or ""
        except Exception:
            text = ""
        yield from text_candidates(text, "attachment:pdf:text")
        try:
            page_images = list(page.images)[:MAX_PDF_IMAGES - images]
        except Exception:
            page_images = []
        for image in page_images:
            images += 1
            try:
                urls = qr.pil_urls(image.image)
            except Exception:
                continue
            yield from (Candidate(url, "qr:pdf-page") for url in urls)


def _annotations(page) -> Iterator[Candidate]:
    """_annotations - URI and Launch action targets of a page's annotations."""
    try:
        annotations = page.get("/Annots") or []
        if hasattr(annotations, "get_object"):
            annotations = annotations.get_object()
    except Exception:
        return
    for reference in list(annotations)[:500]:
        try:
            annotation = reference.get_object()
            action = annotation.get("/A")
            action = action.get_object() if action is not None else None
            if action is None:
                continue
            target = action.get("/URI") or action.get("/F")
            if target is not None and hasattr(target, "get_object"):
                target = target.get_object()
            if isinstance(target, dict):
                target = target.get("/F") or target.get("/UF")
            if target:
                yield Candidate(str(target), "attachment:pdf:annotation")
        except Exception:
            continue


# Internet shortcuts (the INI format Windows writes for .url files).


def shortcut_candidates(data: bytes) -> Iterator[Candidate]:
    """shortcut_candidates - the URL= (and IconFile=) lines of an Internet shortcut."""
    for match in _SHORTCUT_URL.finditer(_text(data)):
        yield Candidate(match.group(1).strip(), "attachment:url-file")
