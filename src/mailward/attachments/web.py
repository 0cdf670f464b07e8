"""HTML and SVG attachments: smuggling, credential forms, obfuscated script.

HTML smuggling builds a file inside the browser (a base64 string decoded
with ``atob`` into a ``Blob``, offered through ``createObjectURL`` and a
link with ``download``, or ``msSaveOrOpenBlob``), so that no mail filter
ever sees the file travel. A local HTML page that asks for a password and
posts it elsewhere is phishing that needs no link. Script hidden behind
``eval``, ``unescape`` and long escape runs is obfuscation. The smuggled
payload itself is decoded by the HTML unpacker (``containers``) and judged
like any other file.

SECURITY: the page is read as text with regular expressions over a bounded
prefix; nothing is rendered or run here (the sandbox does that, confined).
"""

from __future__ import annotations

import re

from mailward.attachments.files import FileNode, Note

_MAX = 8 * 1024 * 1024
_SMUGGLE_SIGNS = {
    "atob": re.compile(rb"\batob\s*\(|base64ToArrayBuffer|Uint8Array\.from"),
    "blob": re.compile(rb"\bnew\s+Blob\s*\(|\bBlob\s*\(\s*\["),
    "object_url": re.compile(rb"createObjectURL"),
    "download": re.compile(rb"""\.download\s*=|\bdownload\s*=\s*["']|setAttribute\s*\(\s*["']download"""),
    "save_blob": re.compile(rb"msSaveOrOpenBlob|msSaveBlob|navigator\.msSave"),
    "data_uri": re.compile(rb"""href\s*=\s*["']?data:application/(?:octet-stream|zip|x-)"""),
}
_FORM = re.compile(rb"(?is)<form\b([^>]*)>(.*?)(?:</form>|$)")
_ACTION = re.compile(rb"""(?i)\baction\s*=\s*["']?([^"'\s>]+)""")
_PASSWORD = re.compile(rb"""(?i)<input\b[^>]*\btype\s*=\s*["']?password""")
_SCRIPT_POST = re.compile(rb"(?i)(?:fetch|XMLHttpRequest|\$\.(?:ajax|post)|navigator\.sendBeacon)"
                          rb"[^;]{0,300}https?://")
_OBFUSCATION = {
    "eval": re.compile(rb"\beval\s*\(|\bnew\s+Function\s*\(|setTimeout\s*\(\s*[\"']"),
    "unescape": re.compile(rb"\bunescape\s*\(|decodeURIComponent\s*\(\s*escape"),
    "char_codes": re.compile(rb"fromCharCode(?:\s*\([^)]{40,})?"),
    "escapes": re.compile(rb"(?:\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}){40,}"),
    "document_write": re.compile(rb"document\.write\s*\(\s*(?:unescape|atob|decodeURI)"),
}
_SVG_SCRIPT = re.compile(rb"(?i)<script\b|\son[a-z]+\s*=|javascript:|<foreignObject\b")
_META_REFRESH = re.compile(rb"""(?i)<meta[^>]+http-equiv\s*=\s*["']?refresh[^>]+url\s*=\s*([^"'>\s]+)""")


def smuggling_signs(data: bytes) -> list[str]:
    """smuggling_signs - which marks of HTML smuggling a page shows."""
    head = data[:_MAX]
    return [name for name, pattern in _SMUGGLE_SIGNS.items() if pattern.search(head)]


def _is_smuggling(signs: list[str], node: FileNode) -> bool:
    strong = {"object_url", "save_blob", "data_uri"}
    has_payload = any(child.name.startswith("smuggled-") for child in node.children)
    if "blob" in signs and (set(signs) & strong) and ("download" in signs or "save_blob" in signs):
        return True
    return has_payload and bool(set(signs) & ({"atob", "blob"} | strong))


def _forms(node: FileNode) -> list[Note]:
    head = node.data[:_MAX]
    notes = []
    for match in _FORM.finditer(head):
        if not _PASSWORD.search(match.group(2)):
            continue
        action = _ACTION.search(match.group(1))
        target = action.group(1).decode("latin-1", "replace") if action else ""
        notes.append(Note("ATTACH_HTML_PASSWORD_FORM",
                          f"{node.path}: a password form posts to {target or 'a script'}",
                          {"action": target[:500]}))
        break
    if not notes and _PASSWORD.search(head) and _SCRIPT_POST.search(head):
        notes.append(Note("ATTACH_HTML_PASSWORD_FORM",
                          f"{node.path}: a password field whose value a script sends away"))
    return notes


def web_notes(node: FileNode) -> list[Note]:
    """web_notes - the findings about one HTML or SVG file."""
    head = node.data[:_MAX]
    notes: list[Note] = []
    signs = smuggling_signs(head)
    if _is_smuggling(signs, node):
        payloads = [c.name for c in node.children if c.name.startswith("smuggled-")]
        notes.append(Note("ATTACH_HTML_SMUGGLING",
                          f"{node.path}: builds a file in the browser ({', '.join(signs)})"
                          + (f"; payload {', '.join(payloads)}" if payloads else ""),
                          {"signs": signs, "payloads": payloads}))
    notes.extend(_forms(node))
    tricks = [name for name, pattern in _OBFUSCATION.items() if pattern.search(head)]
    if len(tricks) >= 2 or "escapes" in tricks or "document_write" in tricks:
        notes.append(Note("ATTACH_HTML_OBFUSCATED", f"{node.path}: obfuscated script "
                          f"({', '.join(tricks)})", {"techniques": tricks}))
    if node.kind == "svg" and _SVG_SCRIPT.search(head):
        notes.append(Note("ATTACH_SVG_SCRIPT", f"{node.path}: an SVG image that runs script"))
    refresh = _META_REFRESH.search(head)
    if refresh:
        notes.append(Note("ATTACH_HTML_REDIRECT", f"{node.path}: redirects the browser to "
                          f"{refresh.group(1)[:200].decode('latin-1', 'replace')}",
                          {"url": refresh.group(1)[:2000].decode("latin-1", "replace")}))
    return notes
