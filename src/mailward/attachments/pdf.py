"""PDF: JavaScript, automatic actions, Launch, embedded files, forms, encryption.

The structure is read in two ways. A linear scan of the bytes for the name
objects that matter (``/JavaScript``, ``/OpenAction``, ``/Launch``, ...),
with ``#xx`` escapes in names undone first (``/J#61vaScript`` is
``/JavaScript``), finds them even in a damaged file and costs one pass.
pypdf then opens the document for what needs the object graph: the files
it embeds and where its forms submit.

SECURITY: a PDF can hold a million objects or a decompression bomb in a
stream. The scan is linear over a bounded prefix; pypdf only runs when the
scan says there is something to extract, with a cap on the bytes it may
return. Encrypted files are reported: what they hide was not analysed.
"""

from __future__ import annotations

import io
import logging
import re

from mailward.attachments.files import FileNode, Note

logging.getLogger("pypdf").setLevel(logging.CRITICAL)

_MAX_SCAN = 32 * 1024 * 1024
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_NAMES = {name: re.compile(rb"/" + name + rb"(?![A-Za-z])") for name in
          (b"JavaScript", b"JS", b"OpenAction", b"AA", b"Launch", b"EmbeddedFile",
           b"EmbeddedFiles", b"AcroForm", b"SubmitForm", b"Encrypt", b"XFA", b"RichMedia",
           b"GoToR", b"GoToE", b"ImportData", b"URI")}
_SUBMIT_TARGET = re.compile(rb"/SubmitForm.{0,400}?/F\s*(?:<<.{0,200}?/F\s*)?\(([^)]{1,500})\)",
                            re.S)


def _normalised(data: bytes) -> bytes:
    head = data[:_MAX_SCAN]
    if b"#" not in head:
        return head
    return _NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), head)


def scan_names(data: bytes) -> dict[str, int]:
    """scan_names - how often each name of interest occurs (pdfid's method)."""
    text = _normalised(data)
    return {name.decode(): len(pattern.findall(text)) for name, pattern in _NAMES.items()}


def pdf_notes(node: FileNode) -> list[Note]:
    """pdf_notes - the active and hidden content of a PDF."""
    counts = scan_names(node.data)
    notes: list[Note] = []
    path = node.path
    if counts["JavaScript"] or counts["JS"]:
        notes.append(Note("ATTACH_PDF_JAVASCRIPT", f"{path}: contains JavaScript",
                          {"count": counts["JavaScript"] + counts["JS"]}))
    if counts["OpenAction"] or counts["AA"]:
        notes.append(Note("ATTACH_PDF_AUTO_ACTION", f"{path}: runs an action when opened "
                          "(/OpenAction or /AA)", {"open_action": counts["OpenAction"],
                                                    "additional_actions": counts["AA"]}))
    if counts["Launch"]:
        notes.append(Note("ATTACH_PDF_LAUNCH", f"{path}: /Launch action starts a program"))
    if counts["EmbeddedFile"] or counts["EmbeddedFiles"]:
        notes.append(Note("ATTACH_PDF_EMBEDDED_FILE", f"{path}: embeds files"))
    if counts["SubmitForm"]:
        targets = [t.decode("latin-1", "replace") for t in
                   _SUBMIT_TARGET.findall(_normalised(node.data))][:5]
        notes.append(Note("ATTACH_PDF_FORM_SUBMIT", f"{path}: a form submits to "
                          f"{', '.join(targets) or 'an address'}", {"targets": targets}))
    if counts["XFA"] or counts["RichMedia"] or counts["ImportData"] or counts["GoToE"]:
        notes.append(Note("ATTACH_PDF_ACTIVE_CONTENT", f"{path}: XFA, RichMedia or "
                          "import actions", {k: counts[k] for k in ("XFA", "RichMedia",
                                                                   "ImportData", "GoToE")}))
    if counts["Encrypt"]:
        notes.append(Note("ATTACH_PDF_ENCRYPTED", f"{path}: encrypted; its streams were "
                          "not analysed"))
    return notes


def embedded_files(data: bytes, limit: int) -> list[tuple[str, bytes]]:
    """embedded_files - (name, bytes) of the files a PDF embeds, within limit bytes."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:
            return []
    found: list[tuple[str, bytes]] = []
    total = 0
    for name, contents in (reader.attachments or {}).items():
        for content in contents:
            total += len(content)
            if total > limit:
                return found
            found.append((name, content))
    return found
