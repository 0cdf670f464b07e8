"""File identification: what a file really is, and what its name claims.

The type comes from the content (magic numbers and structure), never from
the name or the declared Content-Type; both claims are compared with it.
Names are read as a person's mail client shows them: the extension that
counts is that of the logical string, after bidirectional controls, padding
and trailing dots are taken out, so ``contract<U+202E>fdp.exe`` is an
``.exe`` that displays as ``contractexe.pdf``.

SECURITY: the content is hostile and only ever read. Every probe looks at a
bounded prefix (or, for ISO 9660, at fixed offsets), so identification is
linear at worst and never raises.
"""

from __future__ import annotations

import re
import unicodedata
import zipfile
import io
from dataclasses import dataclass

import puremagic

# Unicode controls that reorder how a name is displayed (RFC 9839 lists them
# among the problematic code points): embeddings, overrides and isolates.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                          "\u200e\u200f\u061c")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")

# Extensions whose content runs code when a user opens the file on Windows,
# the containers that hide such files from mail filters, and script types.
DEFAULT_DANGEROUS_EXTENSIONS = (
    "exe", "scr", "com", "pif", "cpl", "dll", "sys", "drv", "ocx", "msi", "msp", "mst",
    "msix", "msixbundle", "appx", "appxbundle", "jar", "js", "jse", "vbs", "vbe", "wsf",
    "wsh", "wsc", "sct", "hta", "ps1", "psm1", "psd1", "ps1xml", "bat", "cmd", "lnk",
    "url", "iso", "img", "vhd", "vhdx", "one", "onepkg", "chm", "hlp", "reg", "inf",
    "scf", "gadget", "application", "appref-ms", "xll", "library-ms", "settingcontent-ms",
    "search-ms", "diagcab", "msc", "cab", "xbap", "jnlp", "mht", "mhtml")
# Content types (as named by ``identify``) that are dangerous whatever the name.
DEFAULT_DANGEROUS_KINDS = ("pe", "elf", "lnk", "msi", "chm", "hta", "script-wsf",
                           "iso", "vhd", "vhdx", "onenote", "jar")

# Each kind's usual extensions, to tell a mismatch from a harmless variant.
KIND_EXTENSIONS: dict[str, frozenset[str]] = {
    "pe": frozenset({"exe", "dll", "scr", "com", "sys", "cpl", "ocx", "drv", "efi",
                     "mui", "pif", "xll"}),
    "elf": frozenset({"", "so", "bin", "elf", "o"}),
    "pdf": frozenset({"pdf"}),
    "zip": frozenset({"zip", "zipx"}),
    "ooxml": frozenset({"docx", "docm", "dotx", "dotm", "xlsx", "xlsm", "xltx", "xltm",
                        "xlsb", "xlam", "pptx", "pptm", "potx", "potm", "ppsx", "ppsm",
                        "ppam", "sldx", "sldm", "vsdx", "vsdm", "thmx", "xps", "oxps"}),
    "odf": frozenset({"odt", "ods", "odp", "odg", "ott", "ots", "otp", "odf"}),
    "jar": frozenset({"jar", "war", "ear", "apk"}),
    # Encrypted Office Open XML files are OLE containers too.
    "ole": frozenset({"doc", "dot", "xls", "xlt", "xla", "ppt", "pps", "pot", "msg",
                      "vsd", "pub", "mpp", "wps", "xlsb", "doc2", "docx", "docm", "dotx",
                      "dotm", "xlsx", "xlsm", "xltx", "xltm", "xlam", "pptx", "pptm", "potx",
                      "potm", "ppsx", "ppsm"}),
    "msi": frozenset({"msi", "msp", "mst"}),
    "rtf": frozenset({"rtf", "doc"}),
    "7z": frozenset({"7z"}),
    "rar": frozenset({"rar", "r00", "cbr"}),
    "gzip": frozenset({"gz", "tgz", "gzip"}),
    "bzip2": frozenset({"bz2", "tbz", "tbz2"}),
    "xz": frozenset({"xz", "txz"}),
    "tar": frozenset({"tar"}),
    "iso": frozenset({"iso", "img", "udf"}),
    "vhd": frozenset({"vhd"}),
    "vhdx": frozenset({"vhdx"}),
    "lnk": frozenset({"lnk"}),
    "onenote": frozenset({"one", "onetoc2"}),
    "cab": frozenset({"cab"}),
    "chm": frozenset({"chm"}),
    "html": frozenset({"html", "htm", "shtml", "xhtml", "hta", "mht", "mhtml", "svg"}),
    "svg": frozenset({"svg", "svgz", "html", "htm"}),
    "hta": frozenset({"hta", "html", "htm"}),
    "script-wsf": frozenset({"wsf", "wsc", "sct", "xml"}),
    "email": frozenset({"eml", "msg", "mht", "txt"}),
    "image": frozenset({"png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ico",
                        "heic", "svg"}),
}
_DECLARED: dict[str, frozenset[str]] = {
    "application/pdf": frozenset({"pdf"}),
    "application/zip": frozenset({"zip", "ooxml", "jar", "odf"}),
    "application/x-zip-compressed": frozenset({"zip", "ooxml", "jar", "odf"}),
    "application/msword": frozenset({"ole", "rtf", "ooxml"}),
    "application/vnd.ms-excel": frozenset({"ole", "ooxml"}),
    "application/vnd.ms-powerpoint": frozenset({"ole", "ooxml"}),
    "application/rtf": frozenset({"rtf"}),
    "image/png": frozenset({"image"}), "image/jpeg": frozenset({"image"}),
    "image/gif": frozenset({"image"}),
    "text/plain": frozenset({"text", "email", "html", "script", "script-js", "svg", "xml"}),
}

_SCRIPT_JS = re.compile(rb"(?i)\b(?:ActiveXObject|WScript\.|GetObject\s*\(|"
                        rb"new\s+Function|eval\s*\(|String\.fromCharCode)")


@dataclass(frozen=True, slots=True)
class NameFacts:
    """What a file name shows and what it hides."""

    shown: str          # the name with controls removed (what the user reads)
    extension: str      # the real extension of the logical string, lower case
    extensions: tuple[str, ...]  # every dotted suffix, last one last
    bidi: bool          # bidirectional controls present
    controls: bool      # other control or invisible characters present
    padded: bool        # a run of spaces or dots hides the real extension


def name_facts(name: str) -> NameFacts:
    """name_facts - the real extension of a name and the tricks it plays."""
    bidi = any(ch in BIDI_CONTROLS for ch in name)
    controls = any((unicodedata.category(ch) == "Cc" or ch in _INVISIBLE) for ch in name)
    cleaned = "".join(ch for ch in name if ch not in BIDI_CONTROLS and ch not in _INVISIBLE
                      and unicodedata.category(ch) != "Cc")
    base = cleaned.replace("\\", "/").rsplit("/", 1)[-1]
    padded = bool(re.search(r"(?:\s{3,}|\.{3,}|_{5,})[^.\s]*\.[A-Za-z0-9]{1,6}\s*$", base))
    # Windows ignores trailing dots and spaces: "a.exe. " opens as "a.exe".
    stripped = base.rstrip(" .")
    parts = stripped.split(".")
    extensions = tuple(p.strip().lower() for p in parts[1:] if p.strip())
    extension = extensions[-1] if extensions else ""
    return NameFacts(cleaned, extension, extensions, bidi, controls, padded)


def _ole_kind(data: bytes) -> str:
    """_ole_kind - OLE compound files: MSI by root CLSID, Outlook MSG by streams."""
    head = data[:1 << 16]
    if b"_\x00_\x00s\x00u\x00b\x00s\x00t\x00g\x001\x00" in head:
        return "msg"
    # MSI databases name their streams with a private encoding, recognised
    # by the root storage CLSID {000C1084-0000-0000-C000-000000000046}.
    if b"\x84\x10\x0c\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46" in head:
        return "msi"
    return "ole"


def _zip_kind(data: bytes) -> str:
    """_zip_kind - Office Open XML, OpenDocument, Java archive, or a plain zip.

    Judged by the archive's own member names: a stored (uncompressed) member
    such as a .docx inside a plain zip puts another package's names into the
    outer bytes, so searching the raw bytes would mistake the container for
    its content. The raw bytes are only a fallback for a damaged directory.
    """
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()[:2000]
    except Exception:
        head = data[:4096]
        if head[30:49] == b"[Content_Types].xml":
            return "ooxml"
        if head[30:38] == b"mimetype" and b"application/vnd.oasis.opendocument" in head[38:120]:
            return "odf"
        return "zip"
    if "[Content_Types].xml" in names:
        return "ooxml"
    if names[:1] == ["mimetype"] and b"application/vnd.oasis.opendocument" in data[38:120]:
        return "odf"
    if "META-INF/MANIFEST.MF" in names and (any(n.endswith(".class") for n in names)
                                            or "AndroidManifest.xml" in names):
        return "jar"
    return "zip"


def _text_kind(data: bytes) -> str | None:
    """_text_kind - markup and scripts, from the first few kilobytes of text."""
    head = data[:8192].lstrip(b"\xef\xbb\xbf \t\r\n")
    lower = head[:4096].lower()
    if lower.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in lower:
        return "svg"
    if lower.startswith(b"<job") or b"<package>" in lower[:512] or (
            lower.startswith(b"<?xml") and b"<job" in lower):
        return "script-wsf"
    if b"<hta:application" in lower:
        return "hta"
    if lower.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script",
                         b"<meta", b"<iframe", b"<form", b"<div", b"<p>", b"<a ")):
        return "html"
    if b"<html" in lower[:1024] or b"<script" in lower[:1024]:
        return "html"
    if re.match(rb"(?i)(?:return-path|received|from|to|subject|message-id|mime-version|"
                rb"date|delivered-to|x-[a-z-]+):", head):
        if re.search(rb"(?im)^(?:from|subject|date|message-id):", head[:8192]):
            return "email"
    if lower.startswith(b"<?xml"):
        return "xml"
    if _SCRIPT_JS.search(head) and b"\x00" not in head:
        return "script-js"
    if head and all(32 <= b or b in (9, 10, 13) for b in head[:512]):
        return "text"
    return None


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "pdf"),
    (0, b"{\\rt", "rtf"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x7fELF", "elf"),
    (0, b"MSCF\x00\x00\x00\x00", "cab"),
    (0, b"ITSF", "chm"),
    (0, b"conectix", "vhd"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"L\x00\x00\x00\x01\x14\x02\x00", "lnk"),
    (0, b"\xe4\x52\x5c\x7b\x8c\xd8\xa7\x4d\xae\xb1\x53\x78\xd0\x29\x96\xd3", "onenote"),
    (0, b"\x89PNG\r\n\x1a\n", "image"),
    (0, b"\xff\xd8\xff", "image"),
    (0, b"GIF8", "image"),
    (0, b"BM", "image-bmp"),
)


def identify(data: bytes) -> str:
    """identify - the kind of a file from its content alone."""
    if not data:
        return "empty"
    if data[:2] == b"MZ":
        return "pe"
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return _ole_kind(data)
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _zip_kind(data)
    for offset, magic, kind in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            if kind == "image-bmp":
                return "image" if len(data) > 26 and data[6:10] == b"\0\0\0\0" else "unknown"
            return kind
    # ISO 9660 and UDF: the volume descriptor "CD001" at sector 16 (or later).
    for offset in (0x8001, 0x8801, 0x9001):
        if data[offset:offset + 5] == b"CD001":
            return "iso"
    if data[0x8001:0x8006] in (b"BEA01", b"NSR02", b"NSR03"):
        return "iso"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    text = _text_kind(data)
    if text:
        return text
    try:
        guess = puremagic.from_string(data[:65536], mime=True)
    except Exception:
        return "unknown"
    if guess.startswith("image/"):
        return "image"
    return f"other:{guess}" if guess else "unknown"


def extension_matches(kind: str, extension: str) -> bool:
    """extension_matches - the name's extension is usual for this kind of content."""
    if kind in ("unknown", "empty", "text", "xml") or kind.startswith("other:"):
        return True
    allowed = KIND_EXTENSIONS.get(kind)
    if allowed is None:
        return True
    if kind == "text" or kind == "script-js":
        return True
    return extension in allowed


def declared_matches(kind: str, declared: str) -> bool:
    """declared_matches - the MIME type the sender declared fits the content."""
    declared = declared.lower()
    if not declared or declared == "application/octet-stream":
        return True
    expected = _DECLARED.get(declared)
    if expected is None:
        return True
    return kind in expected or kind in ("unknown", "empty") or kind.startswith("other:")
