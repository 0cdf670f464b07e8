"""Sandboxes: where suspicious files (and URLs) are run to see what they do.

Every backend speaks one protocol: ``submit`` a sample and get a ticket,
``poll`` the ticket until it gives a Report, with a verdict (clean,
suspicious, malicious, or error) and the evidence behind it. The built-in
backends (``browser``: HTML, SVG and URLs in headless Chromium; ``boxjs``:
JScript droppers under box-js) detonate in a confined child process
(``confine``); ``cape`` hands the file to a CAPE server over its REST API.
The service (``service``) stores jobs, runs them on the task queue and
holds the message until the verdict or the deadline.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

CLEAN = "clean"
SUSPICIOUS = "suspicious"
MALICIOUS = "malicious"
ERROR = "error"
VERDICTS = (CLEAN, SUSPICIOUS, MALICIOUS, ERROR)


@dataclass(frozen=True, slots=True)
class Sample:
    """What is detonated: a file (name, bytes, kind) or a URL."""

    name: str = ""
    data: bytes = b""
    kind: str = ""
    url: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data if not self.url else self.url.encode()).hexdigest()


@dataclass(slots=True)
class Report:
    """A sandbox's answer: the verdict and what it saw."""

    verdict: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "summary": self.summary, "evidence": self.evidence,
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        return cls(str(data.get("verdict", ERROR)), str(data.get("summary", "")),
                   dict(data.get("evidence", {})), float(data.get("seconds", 0.0)))


class SandboxError(Exception):
    """A backend could not take or finish a sample; the text says why."""


class Sandbox(Protocol):
    """One sandbox backend."""

    name: str

    def accepts(self, sample: Sample) -> bool:
        """accepts - whether this backend can detonate the sample."""

    def submit(self, sample: Sample) -> str:
        """submit - start the detonation; a ticket to poll (raises SandboxError)."""

    def poll(self, ticket: str) -> Report | None:
        """poll - the report, or None while the detonation runs."""
