"""Antivirus: every decoded attachment and archive member through each engine.

Engines share one protocol; the check runs each engine over each file of the
message tree and combines the results: any engine calling a file malicious
makes the message malware, and the finding names the engine, the signature
and the file's path. An engine that fails yields its own ``*_FAIL`` finding,
never a silent pass. Files the unpacker could not open (too deep, too big, a
bomb, corrupt) are findings too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Protocol

from mailward.attachments.files import FileNode
from mailward.intel.store import IntelCache
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

# The EICAR test file: the 68-byte string, optionally followed by white space,
# at the start of a file of at most 128 bytes (the EICAR definition).
_EICAR = re.compile(
    rb"X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*"
    rb"[\s\x1a]*\Z")


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one engine said of one file."""

    malicious: bool = False
    signature: str = ""
    error: str = ""


CLEAN = EngineResult()


class Engine(Protocol):
    """An antivirus engine: scans one file's bytes."""

    name: str
    symbol: str

    async def scan(self, node: FileNode) -> EngineResult: ...


class EicarEngine:
    """Recognises the EICAR standard antivirus test file."""

    name = "eicar"
    symbol = "AV_EICAR"

    async def scan(self, node: FileNode) -> EngineResult:
        if len(node.data) <= 128 and _EICAR.match(node.data):
            return EngineResult(True, "EICAR-Test-File")
        return CLEAN


class HashListEngine:
    """Matches file SHA-256s against the threat-intelligence store."""

    name = "hashlist"
    symbol = "AV_HASH_BLOCKLISTED"

    def __init__(self, cache: IntelCache) -> None:
        self.cache = cache

    async def scan(self, node: FileNode) -> EngineResult:
        hit = self.cache.sha256(node.sha256)
        if hit is None:
            return CLEAN
        return EngineResult(True, f"{hit.category} sha256 from {hit.source}")


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
    }

    def __init__(self, engines: list[Engine], cache: IntelCache) -> None:
        self.engines = engines
        self.cache = cache

    @classmethod
    def from_services(cls, services: Services) -> "AntivirusCheck":
        engines: list[Engine] = [HashListEngine(services.intel_cache)]
        if services.settings.antivirus.eicar:
            engines.insert(0, EicarEngine())
        return cls(engines, services.intel_cache)

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        await self.cache.refresh()
        findings: list[Finding] = []
        for node in task.message.files:
            findings.extend(await self._scan(node))
            findings.extend(_problems(node))
        return findings

    async def _scan(self, node: FileNode) -> list[Finding]:
        findings = []
        for engine in self.engines:
            try:
                result = await engine.scan(node)
            except Exception as error:  # an engine's failure is a finding
                result = EngineResult(error=f"{type(error).__name__}: {error}")
            if result.error:
                findings.append(Finding(f"{engine.symbol.removesuffix('_BLOCKLISTED')}_FAIL",
                                        Category.MALWARE,
                                        f"{engine.name} failed on {node.path}: {result.error}"))
            elif result.malicious:
                findings.append(Finding(engine.symbol, Category.MALWARE,
                                        f"{engine.name}: {result.signature} in {node.path}",
                                        data={"sha256": node.sha256, "path": node.path,
                                              "engine": engine.name,
                                              "signature": result.signature}))
        return findings


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
