"""The attachment check: every file of the message tree, judged statically.

For each file (attachments and container members, see ``files``) it names
the real type and compares it with the name and the declared type, applies
the dangerous-type policy (by extension, by content, inside containers too),
flags names that lie (right-to-left override, double extensions, padding),
and runs the analyser of the file's kind: Office and RTF (``office``), PDF
(``pdf``), HTML and SVG (``web``), executables (``executable``). Every file
is listed in an ``ATTACH_FILE`` finding with its path, type, SHA-256 and
the symbols it raised.

What stays suspicious after that (active content a sandbox backend can run)
is asked to be held for the sandbox (``task.holds``); the gateway holds the
message only when the static verdict would let it through.

SECURITY: analysis is bounded per message (``attachments.max_seconds``): past
it the remaining files are not analysed and that is itself a finding. The
analysers run in worker processes (``workers``) bounded per file in time
(``attachments.file_seconds``) and memory (``attachments.file_memory``): a
file that makes a parser spin or swell is killed with its worker and named
(``ATTACH_ANALYSIS_TIMEOUT``, ``ATTACH_ANALYSIS_MEMORY``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, ClassVar

from mailward.attachments.executable import pe_notes
from mailward.attachments.files import FileNode, Note
from mailward.attachments.identify import (
    declared_matches,
    extension_matches,
    name_facts,
)
from mailward.attachments.office import office_notes
from mailward.attachments.pdf import pdf_notes
from mailward.attachments.web import web_notes
from mailward.attachments.workers import AnalyserPool, Outcome, shared_pool
from mailward.hold import HoldRequest
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

log = logging.getLogger("mailward.attachments")

SYMBOLS: dict[str, str] = {
    "ATTACH_FILE": "one file of the message tree: path, type, SHA-256 and its findings",
    "ATTACH_DANGEROUS_TYPE": "a file of a dangerous type (by extension or content), "
                             "also inside a container",
    "ATTACH_TYPE_MISMATCH": "the content's type differs from the name's extension or "
                            "the declared Content-Type",
    "ATTACH_EXECUTABLE_DISGUISED": "an executable or script named as something harmless",
    "ATTACH_DOUBLE_EXTENSION": "a name with a harmless-looking extension before the real one",
    "ATTACH_BIDI_NAME": "bidirectional control characters (e.g. U+202E) in a file name",
    "ATTACH_NAME_TRICK": "control or invisible characters, or padding, in a file name",
    "ATTACH_ZIP_NAME_MISMATCH": "a zip member's local header and central directory names differ",
    "ATTACH_ENCRYPTED_UNSCANNABLE": "an encrypted archive or document that no offered "
                                    "password opens",
    "ATTACH_ENCRYPTED_OPENED": "an encrypted archive opened with a password the message offers",
    "ATTACH_MACRO": "an Office document with VBA macros",
    "ATTACH_MACRO_AUTOEXEC": "macros that run when the document is opened",
    "ATTACH_MACRO_SUSPICIOUS": "macros that use keywords of droppers (Shell, CreateObject...)",
    "ATTACH_XLM_MACRO": "Excel 4 (XLM) macros",
    "ATTACH_DDE": "a DDE field or formula that starts a program",
    "ATTACH_TEMPLATE_INJECTION": "a document that loads its template from outside",
    "ATTACH_EXTERNAL_LINK": "a document that loads an object from outside",
    "ATTACH_OLE_OBJECT": "an Office document with embedded OLE objects",
    "ATTACH_RTF_OBJECT": "an RTF document with embedded OLE objects",
    "ATTACH_OFFICE_EXPLOIT": "an object of a class known for exploits (Equation Editor)",
    "ATTACH_PDF_JAVASCRIPT": "a PDF with JavaScript",
    "ATTACH_PDF_AUTO_ACTION": "a PDF that acts when opened (/OpenAction, /AA)",
    "ATTACH_PDF_LAUNCH": "a PDF with a /Launch action",
    "ATTACH_PDF_EMBEDDED_FILE": "a PDF that embeds files",
    "ATTACH_PDF_FORM_SUBMIT": "a PDF form that submits its fields",
    "ATTACH_PDF_ACTIVE_CONTENT": "a PDF with XFA, RichMedia or import actions",
    "ATTACH_PDF_ENCRYPTED": "an encrypted PDF (its streams were not analysed)",
    "ATTACH_HTML_SMUGGLING": "an HTML file that builds a file in the browser (HTML smuggling)",
    "ATTACH_HTML_PASSWORD_FORM": "an HTML file with a password form posting elsewhere",
    "ATTACH_HTML_OBFUSCATED": "an HTML file with obfuscated script",
    "ATTACH_HTML_REDIRECT": "an HTML file that redirects the browser",
    "ATTACH_SVG_SCRIPT": "an SVG image that runs script",
    "ATTACH_PE_SUSPICIOUS_IMPORTS": "an executable importing injection or download functions",
    "ATTACH_PE_PACKED": "an executable with packed or encrypted sections",
    "ATTACH_PE_UNSIGNED": "an executable without an Authenticode signature",
    "ATTACH_PE_MALFORMED": "a file with an MZ header that is not a valid executable",
    "ATTACH_ANALYSIS_FAILED": "an analyser failed on a file (the file was not analysed)",
    "ATTACH_ANALYSIS_INCOMPLETE": "the time for analysing the message's files ran out",
    "ATTACH_ANALYSIS_TIMEOUT": "an analyser ran past the time allowed for one file and "
                               "was killed (the file was not analysed)",
    "ATTACH_ANALYSIS_MEMORY": "an analyser needed more memory than allowed for one file "
                              "(the file was not analysed)",
    "ATTACH_SANDBOX_PENDING": "a file was submitted to the sandbox; the message waits",
    # Emitted when the sandbox decides a held message (see sandbox.service).
    "ATTACH_SANDBOX_MALICIOUS": "the sandbox saw a file act maliciously",
    "ATTACH_SANDBOX_SUSPICIOUS": "the sandbox saw a file do something suspicious",
    "ATTACH_SANDBOX_CLEAN": "the sandbox saw nothing of note",
    "ATTACH_SANDBOX_ERROR": "the sandbox could not analyse a file",
    "ATTACH_SANDBOX_TIMEOUT": "no sandbox verdict before the deadline",
}
_PHISH = {"ATTACH_HTML_PASSWORD_FORM", "ATTACH_HTML_REDIRECT", "ATTACH_PDF_FORM_SUBMIT"}
_SCRIPT_EXTENSIONS = {"js", "jse", "vbs", "vbe", "wsf", "wsh", "hta", "ps1", "bat", "cmd",
                      "exe", "scr", "com", "pif", "lnk"}
_HARMLESS_LOOKING = {"pdf", "doc", "docx", "xls", "xlsx", "jpg", "jpeg", "png", "gif",
                     "txt", "rtf", "zip", "htm", "html", "csv", "ppt", "pptx", "mp3", "mp4"}
_ACTIVE_KINDS = {"pe", "script-js", "script-wsf", "hta", "html", "svg", "lnk"}

Analyser = Callable[[FileNode], list[Note]]
ANALYSERS: dict[str, Analyser] = {
    "ole": office_notes, "ooxml": office_notes, "rtf": office_notes, "xml": office_notes,
    "pdf": pdf_notes, "html": web_notes, "svg": web_notes, "hta": web_notes, "pe": pe_notes,
}


def _finding(note: Note) -> Finding:
    category = Category.PHISH if note.symbol in _PHISH else Category.MALWARE
    return Finding(note.symbol, category, note.detail, data=dict(note.data))


class FilePolicy:
    """Which types are dangerous: by extension and by content kind."""

    def __init__(self, extensions: list[str], kinds: list[str]) -> None:
        self.extensions = {e.lower().lstrip(".") for e in extensions}
        self.kinds = set(kinds)

    def name_notes(self, node: FileNode, name: str) -> list[Note]:
        """name_notes - what one name (or an alternative name) of a file says."""
        facts = name_facts(name)
        notes: list[Note] = []
        shown = ascii(facts.shown)[1:-1]
        if facts.bidi:
            notes.append(Note("ATTACH_BIDI_NAME", f"{node.path!a}: bidirectional controls in "
                              f"the name; real extension .{facts.extension}",
                              {"name": ascii(name)[1:-1], "extension": facts.extension}))
        if facts.controls or facts.padded:
            notes.append(Note("ATTACH_NAME_TRICK", f"{node.path!a}: control characters or "
                              "padding hide the real name", {"name": ascii(name)[1:-1]}))
        if facts.extension in self.extensions:
            notes.append(Note("ATTACH_DANGEROUS_TYPE", f"{shown}: .{facts.extension} is a "
                              f"dangerous type" + (f" (inside {node.parent.path})"
                                                   if node.parent else ""),
                              {"extension": facts.extension, "depth": node.depth}))
        if (len(facts.extensions) >= 2 and facts.extensions[-2] in _HARMLESS_LOOKING
                and facts.extension in _SCRIPT_EXTENSIONS | self.extensions):
            notes.append(Note("ATTACH_DOUBLE_EXTENSION", f"{shown}: .{facts.extensions[-2]} "
                              f"hides .{facts.extension}"))
        return notes

    def content_notes(self, node: FileNode) -> list[Note]:
        """content_notes - what the content says against the name and declared type."""
        notes: list[Note] = []
        facts = name_facts(node.name)
        kind = node.kind
        if kind in self.kinds and facts.extension not in self.extensions:
            notes.append(Note("ATTACH_DANGEROUS_TYPE", f"{ascii(node.path)[1:-1]}: the content "
                              f"is {kind}", {"kind": kind, "depth": node.depth}))
        if node.name and not extension_matches(kind, facts.extension):
            symbol = ("ATTACH_EXECUTABLE_DISGUISED" if kind in ("pe", "elf", "script-js",
                                                                "script-wsf", "hta", "lnk")
                      and facts.extension not in self.extensions else "ATTACH_TYPE_MISMATCH")
            notes.append(Note(symbol, f"{ascii(node.path)[1:-1]}: named .{facts.extension or '?'}"
                              f" but the content is {kind}",
                              {"kind": kind, "extension": facts.extension}))
        elif node.declared_type and not declared_matches(kind, node.declared_type):
            notes.append(Note("ATTACH_TYPE_MISMATCH", f"{ascii(node.path)[1:-1]}: declared "
                              f"{node.declared_type} but the content is {kind}",
                              {"kind": kind, "declared": node.declared_type}))
        return notes


class AttachmentCheck:
    """Static analysis of every file; asks the sandbox to hold what stays suspicious."""

    name: ClassVar[str] = "attachments"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = SYMBOLS

    def __init__(self, policy: FilePolicy, max_seconds: float, sandbox=None,
                 pool: AnalyserPool | None = None) -> None:
        self.policy = policy
        self.max_seconds = max_seconds
        self.sandbox = sandbox
        self.pool = pool  # None: the analysers run in this process, unbounded

    @classmethod
    def from_services(cls, services: Services) -> "AttachmentCheck | None":
        settings = services.settings.attachments
        if not settings.enabled:
            return None
        policy = FilePolicy(settings.dangerous_extensions, settings.dangerous_kinds)
        from mailward.attachments.sandbox.service import SandboxService

        sandbox = SandboxService.from_services(services)
        pool = (shared_pool(settings.workers, settings.file_seconds, settings.file_memory)
                if settings.workers else None)
        return cls(policy, settings.max_seconds, sandbox, pool)

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        files = task.message.files
        if not files:
            return []
        findings, submit = await asyncio.to_thread(self.analyse, files)
        if submit and self.sandbox is not None:
            items = [self.sandbox.item_for(node) for node in submit]
            task.holds.append(HoldRequest(owner="sandbox", reason="sandbox analysis",
                                          items=items))
            for node in submit:
                findings.append(Finding("ATTACH_SANDBOX_PENDING", Category.MALWARE,
                                        f"{node.path}: sent to the sandbox",
                                        data={"sha256": node.sha256, "path": node.path}))
        return findings

    def analyse(self, files: list[FileNode]) -> tuple[list[Finding], list[FileNode]]:
        """analyse - the findings of every file, and the files for the sandbox."""
        started = time.monotonic()
        findings: list[Finding] = []
        submit: list[FileNode] = []
        for index, node in enumerate(files):
            if time.monotonic() - started > self.max_seconds:
                findings.append(Finding("ATTACH_ANALYSIS_INCOMPLETE", Category.MALWARE,
                                        f"{len(files) - index} file(s) not analysed in "
                                        f"{self.max_seconds:g}s", data={"left": len(files) - index}))
                break
            notes = self.file_notes(node, self.max_seconds - (time.monotonic() - started))
            symbols = sorted({n.symbol for n in notes})
            findings.extend(_finding(n) for n in notes)
            findings.append(Finding("ATTACH_FILE", Category.MALWARE, node.path, data={
                "path": node.path, "type": node.kind, "sha256": node.sha256,
                "size": node.size, "declared": node.declared_type, "findings": symbols}))
            if self.sandbox is not None and self._suspicious(node, symbols) \
                    and self.sandbox.accepts(node):
                submit.append(node)
        return findings, submit

    def file_notes(self, node: FileNode, seconds: float | None = None) -> list[Note]:
        """file_notes - every note of one file: names, content, container, analyser."""
        notes: list[Note] = []
        for name in [node.name, *node.alt_names]:
            notes.extend(self.policy.name_notes(node, name))
        if node.encrypted and "ENCRYPTED" in node.problems:
            notes.append(Note("ATTACH_ENCRYPTED_UNSCANNABLE", f"{node.path}: encrypted and "
                              "no password offered by the message opens it"))
        if not node.data:
            return _unique(notes + list(node.notes))
        notes.extend(self.policy.content_notes(node))
        notes.extend(node.notes)
        analyser = ANALYSERS.get(node.kind)
        if analyser is None and node.name.lower().endswith((".slk", ".csv")):
            analyser = office_notes
        if analyser is not None:
            notes.extend(self._analysed(analyser, node, seconds))
        return _unique(notes)

    def _analysed(self, analyser: Analyser, node: FileNode,
                  seconds: float | None) -> list[Note]:
        """_analysed - the analyser's notes, or the note saying why there are none."""
        if self.pool is None:
            try:
                return list(analyser(node))
            except Exception as error:  # a parser failure is a finding, not a pass
                outcome = Outcome([], f"{type(error).__name__}: {str(error)[:160]}")
        else:
            try:
                outcome = self.pool.run(analyser, node, seconds)
            except Exception as error:  # no worker could be started or reached
                log.error("analyser worker unavailable for %s: %s", node.sha256[:12], error)
                outcome = Outcome([], f"no analyser worker: {type(error).__name__}: "
                                      f"{str(error)[:120]}")
        if not outcome.error:
            return outcome.notes
        data = {"path": node.path, "kind": node.kind, "sha256": node.sha256}
        if outcome.error == "timeout":
            return [Note("ATTACH_ANALYSIS_TIMEOUT", f"{node.path}: {node.kind} analysis "
                         f"ran past {outcome.seconds:.1f}s and was killed",
                         data | {"seconds": round(outcome.seconds, 1)})]
        if outcome.error == "memory":
            return [Note("ATTACH_ANALYSIS_MEMORY", f"{node.path}: {node.kind} analysis "
                         "needed more memory than allowed", data)]
        if outcome.error == "died":
            outcome.error = "its worker process died (crashed or killed)"
        log.info("analyser for %s failed on %s: %s", node.kind, node.sha256[:12],
                 outcome.error)
        return [Note("ATTACH_ANALYSIS_FAILED", f"{node.path}: {node.kind} analysis "
                     f"failed: {outcome.error}", data)]

    def _suspicious(self, node: FileNode, symbols: list[str]) -> bool:
        """_suspicious - active content that static analysis cannot clear."""
        if not node.data:
            return False
        facts = name_facts(node.name)
        if node.kind in _ACTIVE_KINDS or facts.extension in ("js", "jse", "wsf", "html",
                                                             "htm", "svg", "hta"):
            return True
        active = {"ATTACH_MACRO", "ATTACH_XLM_MACRO", "ATTACH_PDF_JAVASCRIPT",
                  "ATTACH_OLE_OBJECT", "ATTACH_RTF_OBJECT"}
        return bool(active & set(symbols))


def _unique(notes: list[Note]) -> list[Note]:
    seen = set()
    result = []
    for note in notes:
        key = (note.symbol, note.detail)
        if key not in seen:
            seen.add(key)
            result.append(note)
    return result
