"""The CAPE backend: files handed to a CAPE sandbox over its REST API (v2).

``submit`` posts the file to ``tasks/create/file/`` and keeps the task id;
``poll`` reads ``tasks/view/{id}/`` and, once the task is reported, the
JSON report from ``tasks/get/report/{id}/json/``. CAPE's ``malscore``
(0-10) becomes the verdict through the configured thresholds, and the
names of the signatures it matched are the evidence.

SECURITY: the token is sent only to the configured URL and never logged;
answers are size-bounded and any malformed answer is a SandboxError, which
the service records as the backend's error verdict.
"""

from __future__ import annotations

from typing import Any

import httpx

from mailward.attachments.sandbox import CLEAN, ERROR, MALICIOUS, SUSPICIOUS, Report, Sample, SandboxError

_DONE = {"reported"}
_FAILED = {"failed_analysis", "failed_processing", "failed_reporting", "banned"}
_MAX_REPORT = 64 * 1024 * 1024


class CapeSandbox:
    """A CAPE server reached over HTTP."""

    name = "cape"

    def __init__(self, url: str, token: str = "", malicious: float = 7.0,
                 suspicious: float = 4.0, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.headers = {"Authorization": f"Token {token}"} if token else {}
        self.malicious = malicious
        self.suspicious = suspicious
        self.timeout = timeout

    def accepts(self, sample: Sample) -> bool:
        return True  # CAPE runs any file type it knows, and URLs

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
                answer = client.request(method, self.url + path, **kwargs)
        except httpx.HTTPError as error:
            raise SandboxError(f"CAPE at {self.url} unreachable: {error}") from None
        if answer.status_code != 200 or len(answer.content) > _MAX_REPORT:
            raise SandboxError(f"CAPE answered {answer.status_code} to {path}")
        try:
            data = answer.json()
        except ValueError:
            raise SandboxError(f"CAPE answered {path} with something that is not JSON") from None
        if not isinstance(data, dict):
            raise SandboxError(f"CAPE answered {path} with {type(data).__name__}")
        if data.get("error"):
            raise SandboxError(f"CAPE refused {path}: {str(data.get('error_value', ''))[:200]}")
        return data

    def submit(self, sample: Sample) -> str:
        """submit - create a CAPE task for the file or URL; its id is the ticket."""
        if sample.url:
            data = self._call("POST", "tasks/create/url/", data={"url": sample.url})
        else:
            files = {"file": (sample.name or "sample.bin", sample.data)}
            data = self._call("POST", "tasks/create/file/", files=files)
        ids = (data.get("data") or {}).get("task_ids") or data.get("task_ids") or []
        if not ids:
            raise SandboxError("CAPE created no task")
        return str(ids[0])

    def poll(self, ticket: str) -> Report | None:
        """poll - None while CAPE works; then the report's verdict."""
        view = self._call("GET", f"tasks/view/{ticket}/")
        status = str((view.get("data") or {}).get("status", ""))
        if status in _FAILED:
            return Report(ERROR, f"CAPE task {ticket} ended {status}", {"task": ticket})
        if status not in _DONE:
            return None
        report = self._call("GET", f"tasks/get/report/{ticket}/json/")
        return self.judge(ticket, report)

    def judge(self, ticket: str, report: dict[str, Any]) -> Report:
        """judge - malscore against the thresholds; signatures as evidence."""
        try:
            score = float(report.get("malscore") or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        signatures = [str(s.get("name", ""))[:100] for s in report.get("signatures", [])
                      if isinstance(s, dict)][:50]
        family = str((report.get("malfamily") or "") or "")[:100]
        evidence = {"task": ticket, "malscore": score, "signatures": signatures,
                    "family": family}
        if score >= self.malicious:
            verdict = MALICIOUS
        elif score >= self.suspicious:
            verdict = SUSPICIOUS
        else:
            verdict = CLEAN
        what = f"CAPE task {ticket}: malscore {score:g}" + (f", {family}" if family else "")
        if signatures:
            what += f" ({', '.join(signatures[:4])})"
        return Report(verdict, what, evidence)
