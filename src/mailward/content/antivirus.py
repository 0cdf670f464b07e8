"""Antivirus: every decoded attachment and archive member through each engine.

Engines share one protocol; the check runs each engine over each file of the
message tree and combines the results: any engine calling a file malicious
makes the message malware, and the finding names the engine, the signature
and the file's path. The files are every attachment and archive member and
every decoded body part. Engines: the EICAR test file, SHA-256 lists (the
intelligence store and list files), ClamAV (``content.clamav``) and YARA
(``content.yarascan``).

An engine that fails yields its own ``*_FAIL`` finding, never a silent pass,
and its ``on_fail`` setting decides the rest: by default the message is not
judged and the sender gets 451 (the bytes are kept), so it comes back when
the engine is up. A file over an engine's size limit is a ``*_TOO_BIG``
finding. Files the unpacker could not open (too deep, too big, a bomb,
corrupt) are findings too.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from mailward.attachments.files import FileNode
from mailward.intel.store import IntelCache
from mailward.pipeline import Outage, PipelineError, Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

log = logging.getLogger("mailward.antivirus")

# The EICAR test file: the 68-byte string, optionally followed by white space,
# at the start of a file of at most 128 bytes (the EICAR definition).
_EICAR = re.compile(
    rb"X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*"
    rb"[\s\x1a]*\Z")


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one engine said of one file.

    ``too_big`` says why a file was not scanned for its size; ``note``
    carries the engine's description of the signature.
    """

    malicious: bool = False
    signature: str = ""
    error: str = ""
    too_big: str = ""
    suspicious: bool = False
    note: str = ""
    category: Category = Category.MALWARE


CLEAN = EngineResult()


class Engine(Protocol):
    """An antivirus engine: scans one file's bytes.

    ``symbol`` names a malicious result; ``fail_symbol`` an engine that could
    not answer; ``too_big_symbol`` a file over the engine's limits;
    ``suspicious_symbol`` a weaker match. An engine backed by a daemon also
    has ``async probe() -> str``: "" when the daemon answers, else why not
    (readiness and the start-up warning ask it).
    """

    name: str
    symbol: str
    fail_symbol: str
    too_big_symbol: str
    suspicious_symbol: str

    async def scan(self, node: FileNode) -> EngineResult: ...


class EicarEngine:
    """Recognises the EICAR standard antivirus test file."""

    name = "eicar"
    symbol = "AV_EICAR"
    fail_symbol = "AV_EICAR_FAIL"
    too_big_symbol = ""
    suspicious_symbol = ""

    async def scan(self, node: FileNode) -> EngineResult:
        if len(node.data) <= 128 and _EICAR.match(node.data):
            return EngineResult(True, "EICAR-Test-File")
        return CLEAN


class HashListEngine:
    """Matches file SHA-256s against the intelligence store and list files.

    A list file holds one SHA-256 per line, optionally followed by white
    space and a name; ``#`` starts a comment. Files are read again when
    their modification time changes; a file that cannot be read keeps its
    last good contents and makes the engine fail.
    """

    name = "hashlist"
    symbol = "AV_HASH_BLOCKLISTED"
    fail_symbol = "AV_HASH_FAIL"
    too_big_symbol = ""
    suspicious_symbol = ""

    def __init__(self, cache: IntelCache, files: list[str] | None = None) -> None:
        self.cache = cache
        self.files = [Path(f) for f in files or []]
        self._stamps: dict[Path, float] = {}
        self._lists: dict[Path, dict[str, str]] = {}
        self._broken = ""
        self._reload()
        if self._broken:
            raise ValueError(f"hashlist.files: cannot read {self._broken}")

    def _reload(self) -> None:
        """_reload - re-read the list files whose modification time moved."""
        broken = []
        for path in self.files:
            try:
                stamp = os.stat(path).st_mtime_ns
                if self._stamps.get(path) == stamp:
                    continue
                self._lists[path] = parse_hash_list(path.read_text("utf-8", "replace"))
                self._stamps[path] = stamp
            except OSError as error:
                broken.append(f"{path}: {error.strerror or error}")
        if broken and not self._broken:
            log.error("hash list unreadable: %s", "; ".join(broken))
        self._broken = "; ".join(broken)

    async def scan(self, node: FileNode) -> EngineResult:
        hit = self.cache.sha256(node.sha256)
        if hit is not None:
            return EngineResult(True, f"{hit.category} sha256 from {hit.source}")
        self._reload()
        for path, hashes in self._lists.items():
            if node.sha256 in hashes:
                name = hashes[node.sha256]
                return EngineResult(True, f"{name or 'listed'} (sha256 list {path.name})")
        if self._broken:
            return EngineResult(error=self._broken)
        return CLEAN


_HASH_LINE = re.compile(r"([0-9a-fA-F]{64})(?:\s+(.*))?")


def parse_hash_list(text: str) -> dict[str, str]:
    """parse_hash_list - sha256 -> name from the lines of a list file."""
    hashes: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = _HASH_LINE.fullmatch(line)
        if match:
            hashes[match.group(1).lower()] = (match.group(2) or "").strip()[:200]
    return hashes


# What an engine failure does beyond its *_FAIL finding (None = nothing more).
_FAIL_ACTION_SYMBOLS = {"quarantine": "AV_FAIL_QUARANTINE", "tag": "AV_FAIL_TAG",
                        "deliver": None}


class AntivirusCheck:
    """Run every engine over every file of the message tree."""

    name: ClassVar[str] = "antivirus"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "AV_EICAR": "a file is the EICAR antivirus test file",
        "AV_HASH_BLOCKLISTED": "a file's SHA-256 is a known-bad hash",
        "AV_HASH_FAIL": "the hash list could not be consulted",
        "AV_EICAR_FAIL": "the EICAR engine failed",
        "AV_ARCHIVE_UNSCANNABLE": "an archive could not be fully unpacked (limit, bomb or corrupt)",
        "AV_ENCRYPTED_ARCHIVE": "an archive member is encrypted and was not scanned",
        "CLAMAV_VIRUS": "ClamAV found a signature in a file",
        "CLAMAV_FAIL": "clamd was down, timed out or answered with an error",
        "CLAMAV_TOO_BIG": "a file is over ClamAV's size limits and was not fully scanned",
        "YARA_MALICIOUS": "a YARA rule of severity malicious matched a file",
        "YARA_SUSPICIOUS": "a YARA rule of severity suspicious matched a file",
        "YARA_FAIL": "YARA matching failed or timed out",
        "YARA_TOO_BIG": "a file is over yara.max_size and was not matched",
        "AV_FAIL_QUARANTINE": "an engine failed and its on_fail setting quarantines",
        "AV_FAIL_TAG": "an engine failed and its on_fail setting tags",
    }

    def __init__(self, engines: list[Engine], cache: IntelCache,
                 on_fail: dict[str, str] | None = None) -> None:
        self.engines = engines
        self.cache = cache
        self.on_fail = on_fail or {}

    @classmethod
    def from_services(cls, services: Services) -> "AntivirusCheck":
        settings = services.settings
        engines: list[Engine] = [HashListEngine(services.intel_cache,
                                                settings.hashlist.files)]
        on_fail = {}
        if settings.antivirus.eicar:
            engines.insert(0, EicarEngine())
        if settings.clamav.address:
            from mailward.content.clamav import ClamavEngine, ClamdClient

            client = ClamdClient(settings.clamav.address, settings.clamav.timeout)
            engines.append(ClamavEngine(client, settings.clamav.max_size,
                                        settings.clamav.concurrency))
            on_fail["clamav"] = settings.clamav.on_fail
        if settings.yara.enabled:
            from mailward.content.yarascan import YaraEngine

            engines.append(YaraEngine.from_settings(
                settings.yara.rules_dir, settings.yara.builtin_rules,
                settings.yara.max_size, settings.yara.timeout))
            on_fail["yara"] = settings.yara.on_fail
        return cls(engines, services.intel_cache, on_fail)

    async def probe(self) -> list[Outage]:
        """probe - the engines backed by a daemon that does not answer now."""
        outages = []
        for engine in self.engines:
            probe = getattr(engine, "probe", None)
            detail = await probe() if probe is not None else ""
            if detail:
                action = self.on_fail.get(engine.name, "deliver")
                outages.append(Outage(engine.name, f"{detail} (on_fail = {action})",
                                      stops_mail=action == "tempfail"))
        return outages

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        await self.cache.refresh()
        findings: list[Finding] = []
        failed: set[str] = set()
        for node in scan_targets(task.message):
            findings.extend(await self._scan(node, failed))
            findings.extend(_problems(node))
        return findings + self._failure_actions(task, findings, failed)

    async def _scan(self, node: FileNode, failed: set[str]) -> list[Finding]:
        findings = []
        for engine in self.engines:
            if engine.name in failed:
                continue  # one failure per engine and message: no wait per file
            try:
                result = await engine.scan(node)
            except Exception as error:  # an engine's failure is a finding
                result = EngineResult(error=f"{type(error).__name__}: {error}")
            finding = _finding(engine, node, result)
            if result.error:
                failed.add(engine.name)
            if finding is not None:
                findings.append(finding)
        return findings

    def _failure_actions(self, task: Task, findings: list[Finding],
                         failed: set[str]) -> list[Finding]:
        """_failure_actions - 451 for a failed engine set to tempfail, or its symbol."""
        extra: list[Finding] = []
        for engine in self.engines:
            if engine.name not in failed:
                continue
            action = self.on_fail.get(engine.name, "deliver")
            failure = next(f for f in findings if f.symbol == engine.fail_symbol)
            if action == "tempfail":
                # TODO: The message is parked with its bytes, but nothing re-runs
                # parked messages when the engine is back; it relies on the
                # sender's retry, and a sender that never retries loses it.
                task.log.warning("%s: %s; answering 451", failure.symbol, failure.detail)
                raise PipelineError(f"{failure.symbol}: {failure.detail}")
            symbol = _FAIL_ACTION_SYMBOLS.get(action)
            if symbol:
                extra.append(Finding(symbol, Category.MALWARE,
                                     f"{engine.name}.on_fail = {action}"))
        return extra


def scan_targets(message) -> list[FileNode]:
    """scan_targets - the file tree, then every decoded body part as a file."""
    targets = list(message.files)
    for entity in message.text_parts + message.html_parts:
        payload = entity.payload
        if payload:
            targets.append(FileNode(f"(body {entity.content_type})", payload,
                                    declared_type=entity.content_type,
                                    mime_path=entity.path))
    return targets


def _finding(engine: Engine, node: FileNode, result: EngineResult) -> Finding | None:
    """_finding - the finding one engine's result on one file makes, if any."""
    if result is CLEAN:
        return None
    data = {"sha256": node.sha256, "path": node.path, "engine": engine.name,
            "signature": result.signature}
    if result.error:
        return Finding(engine.fail_symbol, Category.MALWARE,
                       f"{engine.name} failed on {node.path}: {result.error}",
                       data={"engine": engine.name, "path": node.path,
                             "error": result.error})
    if result.malicious:
        note = f" ({result.note})" if result.note else ""
        return Finding(engine.symbol, result.category,
                       f"{engine.name}: {result.signature} in {node.path}{note}", data=data)
    if result.suspicious and engine.suspicious_symbol:
        note = f" ({result.note})" if result.note else ""
        return Finding(engine.suspicious_symbol, result.category,
                       f"{engine.name}: {result.signature} in {node.path}{note}", data=data)
    if result.too_big and engine.too_big_symbol:
        return Finding(engine.too_big_symbol, Category.MALWARE,
                       f"{engine.name} did not scan {node.path}: {result.too_big}",
                       data={"engine": engine.name, "path": node.path,
                             "sha256": node.sha256})
    return None


def _problems(node: FileNode) -> list[Finding]:
    findings = []
    for problem in node.problems:
        if problem == "ENCRYPTED":
            findings.append(Finding("AV_ENCRYPTED_ARCHIVE", Category.MALWARE,
                                    f"encrypted, not scanned: {node.path}"))
        else:
            findings.append(Finding("AV_ARCHIVE_UNSCANNABLE", Category.MALWARE,
                                    f"{node.path}: {problem}"))
    return findings
