"""Office documents: macros, Excel 4 macros, DDE, external templates, embedded objects.

OLE (doc, xls, ppt) and Office Open XML (docx, xlsm, ...) files, SYLK and
Excel 2003 XML go through oletools: olevba for VBA and XLM macros (auto-exec
triggers and suspicious keywords), msodde for DDE fields, oleobj for
embedded OLE objects and OLE Package payloads. Relationships that point
outside the document are read from the package's ``.rels`` parts: an
external ``attachedTemplate`` is template injection (the document fetches
and runs a remote template when opened). RTF objects go through rtfobj.

SECURITY: documents are parsed, never rendered or run; oletools works on
the bytes in memory. A parser exception is a finding (``ATTACH_ANALYSIS_
FAILED``), never a pass.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from typing import Iterator

from mailward.attachments.files import FileNode, Note

log = logging.getLogger("mailward.attachments")

for _noisy in ("olevba", "msodde", "oleobj", "rtfobj", "olefile", "xls_parser", "ooxml",
               "crypto", "ppt_record_parser", "record_base"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)

_SUSPICIOUS_REL = {"attachedTemplate": "ATTACH_TEMPLATE_INJECTION",
                   "oleObject": "ATTACH_EXTERNAL_LINK", "frame": "ATTACH_EXTERNAL_LINK",
                   "subDocument": "ATTACH_EXTERNAL_LINK", "externalLinkPath": "ATTACH_EXTERNAL_LINK",
                   "hyperlink": "", "image": "", "mailMergeSource": "ATTACH_EXTERNAL_LINK"}
_REL = re.compile(rb"<Relationship\b[^>]*>", re.I)
_ATTR = re.compile(rb'(\w+)\s*=\s*"([^"]*)"')
# Equation Editor, the OLE class of CVE-2017-11882 and CVE-2018-0802.
_EQUATION_CLSIDS = {"0002CE02-0000-0000-C000-000000000046",
                    "0002CE03-0000-0000-C000-000000000046"}
_MAX_RELS = 2000


def _rels(data: bytes) -> Iterator[tuple[str, str, str]]:
    """_rels - (part, type, target) of every external relationship of a package."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in archive.namelist() if n.endswith(".rels")][:_MAX_RELS]
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    for name in names:
        try:
            with archive.open(name) as handle:
                text = handle.read(4 * 1024 * 1024)
        except Exception:
            continue
        for element in _REL.findall(text):
            attrs = {k.decode(): v.decode("utf-8", "replace") for k, v in _ATTR.findall(element)}
            if attrs.get("TargetMode", "").lower() == "external":
                yield name, attrs.get("Type", "").rsplit("/", 1)[-1], attrs.get("Target", "")


def _relationship_notes(node: FileNode) -> list[Note]:
    notes = []
    for part, kind, target in _rels(node.data):
        symbol = _SUSPICIOUS_REL.get(kind, "ATTACH_EXTERNAL_LINK")
        if not symbol:
            continue
        what = "template" if symbol == "ATTACH_TEMPLATE_INJECTION" else f"{kind} object"
        notes.append(Note(symbol, f"{node.path}: {what} loaded from {target[:200]} "
                          f"({part})", {"target": target[:2000], "relationship": kind}))
    return notes


def _is_workbook(data: bytes) -> bool:
    return b"xl/workbook" in data[:1 << 20] or b"xl/_rels" in data[:1 << 20]


def _macrosheet_notes(node: FileNode) -> list[Note]:
    """_macrosheet_notes - Excel 4 macro sheets stored as parts of a workbook package."""
    try:
        names = zipfile.ZipFile(io.BytesIO(node.data)).namelist()
    except (zipfile.BadZipFile, ValueError):
        return []
    sheets = [n for n in names if "/macrosheets/" in n.lower()]
    if not sheets:
        return []
    return [Note("ATTACH_XLM_MACRO", f"{node.path}: Excel 4 (XLM) macro sheets "
                 f"({', '.join(sheets[:3])})", {"parts": sheets[:20]})]


def _vba_notes(node: FileNode) -> list[Note]:
    from oletools import olevba

    notes: list[Note] = []
    parser = olevba.VBA_Parser(node.name or "document", data=node.data, relaxed=True)
    try:
        has_vba = parser.detect_vba_macros()
        has_xlm = bool(parser.detect_xlm_macros()) if hasattr(parser, "detect_xlm_macros") \
            else False
        if not has_vba and not has_xlm:
            return notes
        results = parser.analyze_macros() or []
    finally:
        parser.close()
    autoexec = sorted({keyword for kind, keyword, _ in results if kind == "AutoExec"})
    suspicious = sorted({keyword for kind, keyword, _ in results if kind == "Suspicious"
                         and keyword != "XLM macro"})
    iocs = sorted({keyword for kind, keyword, _ in results if kind == "IOC"})[:20]
    if has_vba:
        notes.append(Note("ATTACH_MACRO", f"{node.path}: VBA macros", {"iocs": iocs}))
    if has_xlm:
        notes.append(Note("ATTACH_XLM_MACRO", f"{node.path}: Excel 4 (XLM) macros"))
    if autoexec:
        notes.append(Note("ATTACH_MACRO_AUTOEXEC", f"{node.path}: macros run on open "
                          f"({', '.join(autoexec[:5])})", {"triggers": autoexec}))
    if suspicious:
        notes.append(Note("ATTACH_MACRO_SUSPICIOUS", f"{node.path}: macros use "
                          f"{', '.join(suspicious[:6])}", {"keywords": suspicious}))
    return notes


def _dde_notes(node: FileNode) -> list[Note]:
    from oletools import msodde

    text = ""
    excel = False
    if node.kind == "ooxml":
        lowered = node.name.lower()
        reader = msodde.process_xlsx if lowered.endswith((".xlsx", ".xlsm", ".xlsb", ".xltx",
                                                          ".xltm", ".xlam")) \
            else msodde.process_docx
        excel = reader is msodde.process_xlsx
        text = reader(io.BytesIO(node.data)) or ""
        if not text and not excel and _is_workbook(node.data):
            text, excel = msodde.process_xlsx(io.BytesIO(node.data)) or "", True
    elif node.kind == "ole":
        import olefile

        text = msodde.process_doc(olefile.OleFileIO(node.data)) or ""
    elif node.kind in ("text", "xml"):
        text = _text_dde(node.data)
    # Word gives every field (DDE ones are named so); Excel gives DDE links only.
    fields = [line.strip() for line in str(text).splitlines() if line.strip()
              and (excel or re.search(r"(?i)\bdde(auto)?\b|\|", line))]
    if not fields:
        return []
    return [Note("ATTACH_DDE", f"{node.path}: DDE field {fields[0][:160]!r}",
                 {"fields": [f[:300] for f in fields[:10]]})]


_CSV_DDE = re.compile(rb"(?im)^[^\n]*?[=+\-@][A-Za-z0-9_.]*\|\s*['\"][^\n]{0,200}['\"]![^\n]*$")
_XML_DDE = re.compile(rb"(?i)<(?:[a-z]+:)?ddeLink\b|\bDDEAUTO\b|<w:instrText[^>]*>\s*DDE")


def _text_dde(data: bytes) -> str:
    """_text_dde - DDE formulas in CSV/SYLK text and Office 2003 XML."""
    head = data[:4 * 1024 * 1024]
    found = [m.group(0).decode("utf-8", "replace") for m in _CSV_DDE.finditer(head)][:10]
    if _XML_DDE.search(head):
        found.append("DDE " + _XML_DDE.search(head).group(0).decode("utf-8", "replace"))
    return "\n".join(found)


def _ole_object_notes(node: FileNode) -> list[Note]:
    """_ole_object_notes - embedded OLE objects; the Equation Editor is an exploit."""
    notes = []
    clsids = set()
    if node.kind == "ole":
        import olefile

        ole = olefile.OleFileIO(node.data)
        for entry in ole.listdir(streams=False, storages=True):
            clsid = ole.getclsid(entry)
            if clsid:
                clsids.add(clsid.upper())
        has_objects = any(path[0] == "ObjectPool" or path[-1] == "\x01Ole10Native"
                          for path in ole.listdir())
        ole.close()
    elif node.kind == "ooxml":
        try:
            names = zipfile.ZipFile(io.BytesIO(node.data)).namelist()
        except (zipfile.BadZipFile, ValueError):
            names = []
        has_objects = any("/embeddings/" in n and n.lower().endswith((".bin", ".ole"))
                          for n in names)
    else:
        has_objects = False
    if clsids & _EQUATION_CLSIDS:
        notes.append(Note("ATTACH_OFFICE_EXPLOIT", f"{node.path}: Equation Editor object "
                          "(CVE-2017-11882 family)", {"clsids": sorted(clsids & _EQUATION_CLSIDS)}))
    if has_objects:
        notes.append(Note("ATTACH_OLE_OBJECT", f"{node.path}: embedded OLE object(s)"))
    return notes


def _rtf_notes(node: FileNode) -> list[Note]:
    from oletools import rtfobj

    notes = []
    parser = rtfobj.RtfObjParser(node.data)
    parser.parse()
    for index, obj in enumerate(parser.objects[:100]):
        class_name = (getattr(obj, "class_name", b"") or b"").decode("latin-1", "replace")
        clsid = (getattr(obj, "clsid", "") or "").upper()
        if clsid in _EQUATION_CLSIDS or class_name.lower().startswith("equation"):
            notes.append(Note("ATTACH_OFFICE_EXPLOIT", f"{node.path}: RTF object {index} is "
                              f"an Equation Editor object ({class_name or clsid})",
                              {"class": class_name, "clsid": clsid}))
        elif obj.is_ole or obj.is_package:
            notes.append(Note("ATTACH_RTF_OBJECT", f"{node.path}: RTF embeds an OLE object "
                              f"({class_name or 'unnamed class'})", {"class": class_name}))
    return notes[:10]


def office_notes(node: FileNode) -> list[Note]:
    """office_notes - every finding about an Office or RTF document."""
    notes: list[Note] = []
    if node.kind == "rtf":
        return _rtf_notes(node)
    if node.kind == "ooxml":
        notes.extend(_relationship_notes(node))
        notes.extend(_macrosheet_notes(node))
    if node.kind in ("ole", "ooxml", "xml", "text") or node.name.lower().endswith(".slk"):
        if node.kind in ("ole", "ooxml") or node.name.lower().endswith((".slk", ".xml")):
            notes.extend(_vba_notes(node))
        notes.extend(_dde_notes(node))
    if node.kind in ("ole", "ooxml"):
        notes.extend(_ole_object_notes(node))
    return notes


def embedded_objects(data: bytes, kind: str) -> list[tuple[str, bytes]]:
    """embedded_objects - (name, bytes) of files embedded in a document.

    OLE Package objects (``\\x01Ole10Native``) carry a file with its name: a
    script or an executable dropped by a double click. The raw object is
    given only when it holds no package.
    """
    from oletools import oleobj, rtfobj

    found: list[tuple[str, bytes]] = []
    if kind == "rtf":
        parser = rtfobj.RtfObjParser(data)
        parser.parse()
        for index, obj in enumerate(parser.objects[:100]):
            if obj.is_package and obj.olepkgdata:
                found.append((obj.filename or f"rtf-object-{index}", obj.olepkgdata))
            elif obj.is_ole and obj.oledata:
                found.append((f"rtf-object-{index}.ole", obj.oledata))
        return found
    for ole in oleobj.find_ole("document", data):
        if ole is None:
            continue
        try:
            for path in ole.listdir():
                if path[-1] != "\x01Ole10Native":
                    continue
                stream = ole.openstream(path).read()
                native = oleobj.OleNativeStream(stream)
                name = native.filename or native.src_path or "package"
                name = str(name).replace("\\", "/").rsplit("/", 1)[-1]
                if native.data:
                    found.append((name, bytes(native.data)))
        except Exception as error:
            log.debug("embedded object unreadable: %s", error)
        finally:
            ole.close()
    return found
