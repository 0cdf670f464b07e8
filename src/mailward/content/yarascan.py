"""YARA: files matched against compiled rules (yara-python).

The rule set is the starter set shipped in the package (``data/yara``:
macro droppers, HTML smuggling, script droppers, phishing kits), plus every
``*.yar`` and ``*.yara`` file of ``yara.rules_dir``. Rules are compiled once
at start-up; a rule that does not compile stops the gateway with the file
and line, rather than letting mail pass unscanned.

A rule's metadata decides what a match means: ``severity`` is
``malicious`` (the default) or ``suspicious``; ``category`` is ``malware``
(the default) or ``phish``; ``description`` is shown as evidence.

TODO: Rules see each file's bytes as the unpacker leaves them: OOXML
documents (docx, xlsm) are zips that are not opened here and VBA source is
stored compressed, so the macro rules match only OLE documents whose
project names the identifiers in clear; a dropper in a docm is left to the
attachment stage's macro analysis.

SECURITY: matching runs under yara's own time limit, off the event loop for
every file over ``INLINE_BYTES``; a smaller file (most body parts) is
matched on the loop, which it holds for a fraction of a millisecond, sparing
the hand-off to a thread (about 60 microseconds of CPU of its own). Files
over ``yara.max_size`` are reported as too big, never as clean.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yara

from mailward.attachments.files import FileNode
from mailward.content.antivirus import CLEAN, EngineResult
from mailward.verdict import Category

_SEVERITIES = ("malicious", "suspicious")
# Files up to this size are matched on the event loop rather than in a thread.
INLINE_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class RuleSources:
    """Named rule files to compile together (namespace -> path)."""

    files: dict[str, str]


def shipped_rules_dir() -> Path:
    return Path(str(resources.files("mailward").joinpath("data/yara")))


def rule_files(rules_dir: str, builtin: bool) -> RuleSources:
    """rule_files - the shipped rule files and those of the site's directory."""
    files: dict[str, str] = {}
    directories = [shipped_rules_dir()] if builtin else []
    if rules_dir:
        site = Path(rules_dir).expanduser()
        if not site.is_dir():
            raise ValueError(f"yara.rules_dir: {rules_dir} is not a directory")
        directories.append(site)
    for number, directory in enumerate(directories):
        for path in sorted(directory.iterdir()):
            if path.suffix in (".yar", ".yara") and path.is_file():
                files[f"r{number}_{path.stem}"] = str(path)
    if not files:
        raise ValueError("yara: no rule files (yara.builtin_rules is off and "
                         "yara.rules_dir has no *.yar files)")
    return RuleSources(files)


def compile_rules(sources: RuleSources) -> "yara.Rules":
    """compile_rules - one compiled set; ValueError naming the broken file."""
    try:
        rules = yara.compile(filepaths=sources.files)
    except yara.Error as error:
        raise ValueError(f"yara rules do not compile: {error}") from None
    for rule in rules:
        severity = rule.meta.get("severity", "malicious")
        if severity not in _SEVERITIES:
            raise ValueError(f"yara rule {rule.identifier}: meta severity {severity!r} "
                             f"is not one of {', '.join(_SEVERITIES)}")
        if rule.meta.get("category", "malware") not in ("malware", "phish"):
            raise ValueError(f"yara rule {rule.identifier}: meta category must be "
                             "malware or phish")
    return rules


class YaraEngine:
    """The antivirus engine backed by YARA rules."""

    name = "yara"
    symbol = "YARA_MALICIOUS"
    suspicious_symbol = "YARA_SUSPICIOUS"
    fail_symbol = "YARA_FAIL"
    too_big_symbol = "YARA_TOO_BIG"

    def __init__(self, rules: "yara.Rules", max_size: int, timeout: float) -> None:
        self.rules = rules
        self.max_size = max_size
        self.timeout = max(1, int(timeout))

    @classmethod
    def from_settings(cls, rules_dir: str, builtin: bool, max_size: int,
                      timeout: float) -> "YaraEngine":
        return cls(compile_rules(rule_files(rules_dir, builtin)), max_size, timeout)

    def _match(self, data: bytes) -> list:
        return self.rules.match(data=data, timeout=self.timeout, fast=True)

    async def scan(self, node: FileNode) -> EngineResult:
        if node.size > self.max_size:
            return EngineResult(too_big=f"{node.size} bytes, over yara.max_size "
                                        f"of {self.max_size}")
        if not node.data:
            return CLEAN
        try:
            if node.size <= INLINE_BYTES:
                matches = self._match(node.data)
            else:
                matches = await asyncio.to_thread(self._match, node.data)
        except yara.TimeoutError:
            return EngineResult(error=f"matching took over {self.timeout}s")
        except yara.Error as error:
            return EngineResult(error=f"yara: {error}")
        if not matches:
            return CLEAN
        return _result(matches)


def _result(matches: list) -> EngineResult:
    """_result - the strongest of the matches: malicious before suspicious."""
    malicious = [m for m in matches if m.meta.get("severity", "malicious") == "malicious"]
    chosen = malicious or matches
    phish = all(m.meta.get("category", "malware") == "phish" for m in chosen)
    names = ", ".join(sorted(m.rule for m in chosen))
    descriptions = "; ".join(str(m.meta["description"]) for m in chosen
                             if "description" in m.meta)
    return EngineResult(malicious=bool(malicious), suspicious=not malicious,
                        signature=names, note=descriptions,
                        category=Category.PHISH if phish else Category.MALWARE)
