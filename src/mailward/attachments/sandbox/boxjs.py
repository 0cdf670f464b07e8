"""The script sandbox: JScript droppers (js, jse, wsf) under box-js.

box-js (an npm package) emulates Windows Script Host: WScript, ActiveX
objects (XMLHTTP, ADODB.Stream, WScript.Shell, the file system) are fakes
that record what the script asks of them. Its record is the evidence: the
URLs a dropper would fetch, the files it would write, the commands it
would run.

SECURITY: box-js runs the script in a node VM, which is no security
boundary, so it runs confined (``confine``): no network, a throw-away
directory, limits on time, memory and file size. It is never given
``--download``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mailward.attachments.sandbox import CLEAN, ERROR, MALICIOUS, SUSPICIOUS, Report, Sample, SandboxError
from mailward.attachments.sandbox.confine import Limits, run_confined

_EXTENSIONS = (".js", ".jse", ".wsf", ".wsc", ".sct")
_KINDS = ("script-js", "script-wsf")
_EXECUTABLE = re.compile(r"(?i)\.(exe|dll|scr|ps1|bat|cmd|vbs|js|jse|hta|lnk|msi)$")


def find_boxjs(configured: str, data_dir: Path) -> str | None:
    """find_boxjs - the box-js program: configured, project-local, or on PATH."""
    if configured:
        return configured if shutil.which(configured) or Path(configured).exists() else None
    for base in (data_dir, Path.cwd(), Path(__file__).resolve().parents[4]):
        candidate = base / "node_modules" / ".bin" / "box-js"
        if candidate.exists():
            return str(candidate)
    return shutil.which("box-js")


class BoxJsSandbox:
    """Runs scripts under box-js; each ticket is a directory with the result."""

    name = "boxjs"

    def __init__(self, program: str, workdir: Path, limits: Limits) -> None:
        self.program = program
        self.workdir = workdir
        self.limits = limits

    def accepts(self, sample: Sample) -> bool:
        return not sample.url and (sample.kind in _KINDS
                                   or sample.name.lower().endswith(_EXTENSIONS))

    def submit(self, sample: Sample) -> str:
        """submit - run the script now in the child; the ticket is its result file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        job = Path(tempfile.mkdtemp(prefix="boxjs-", dir=self.workdir))
        suffix = ".wsf" if sample.kind == "script-wsf" or sample.name.lower().endswith(".wsf") \
            else ".jse" if sample.name.lower().endswith(".jse") else ".js"
        script = job / f"sample{suffix}"
        script.write_bytes(sample.data)
        out = job / "out"
        out.mkdir()
        budget = max(int(self.limits.seconds) - 5, 3)
        outcome = run_confined(
            [self.program, script.name, f"--output-dir={out}", "--no-kill", "--no-shell-error",
             f"--timeout={budget}", "--loglevel=warn"], job,
            Limits(self.limits.seconds, self.limits.memory, self.limits.file_size,
                   self.limits.open_files, self.limits.network),
            env={"NODE_OPTIONS": f"--max-old-space-size={self.limits.memory // (2 * 1024 ** 2)}"})
        report = _report(out, outcome.timed_out, outcome.stderr, outcome.seconds)
        (job / "report.json").write_text(json.dumps(report.as_dict()))
        for child in job.iterdir():
            if child.name != "report.json":
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
        return str(job / "report.json")

    def poll(self, ticket: str) -> Report | None:
        path = Path(ticket)
        if not path.exists():
            raise SandboxError(f"box-js result {ticket} is gone")
        return Report.from_dict(json.loads(path.read_text()))


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(errors="replace")) if path.exists() else None
    except (json.JSONDecodeError, OSError):
        return None


def _report(out: Path, timed_out: bool, stderr: bytes, seconds: float) -> Report:
    results = next(out.glob("*.results"), None) if out.exists() else None
    if results is None:
        return Report(ERROR, "box-js gave no result" + (" (timed out)" if timed_out else "")
                      + f": {stderr.decode('utf-8', 'replace')[-300:]}", {}, seconds)
    iocs = _load(results / "IOC.json") or []
    urls = [u for u in (_load(results / "urls.json") or []) if isinstance(u, str)][:100]
    evidence: dict[str, Any] = {"urls": urls, "files_written": [], "commands": [],
                                "activex": [], "timed_out": timed_out}
    for ioc in iocs if isinstance(iocs, list) else []:
        kind = ioc.get("type", "")
        value = ioc.get("value", {}) if isinstance(ioc.get("value"), dict) else {}
        if kind == "FileWrite" and value.get("file"):
            evidence["files_written"].append(str(value["file"])[:300])
        elif kind == "Run" or kind == "ShellExecute" or "command" in value:
            evidence["commands"].append(str(value.get("command") or ioc.get("description"))[:300])
        elif kind in ("NewActiveXObject", "ActiveXObject") or "ActiveX" in kind:
            evidence["activex"].append(str(value.get("name") or ioc.get("description"))[:200])
        elif "ran the command" in str(ioc.get("description", "")):
            evidence["commands"].append(str(ioc["description"])[:300])
    for key in ("files_written", "commands", "activex"):
        evidence[key] = list(dict.fromkeys(evidence[key]))[:50]
    return judge(evidence, seconds)


def judge(evidence: dict[str, Any], seconds: float = 0.0) -> Report:
    """judge - the verdict from what the script asked of the emulated host."""
    bad = []
    if evidence.get("commands"):
        bad.append(f"runs {evidence['commands'][0][:160]}")
    dropped = [f for f in evidence.get("files_written", []) if _EXECUTABLE.search(f)]
    if dropped:
        bad.append(f"writes {dropped[0][:160]}")
    if evidence.get("urls") and (dropped or evidence.get("commands")):
        bad.append(f"downloads from {evidence['urls'][0][:160]}")
    if bad:
        return Report(MALICIOUS, "; ".join(bad), evidence, seconds)
    if evidence.get("urls"):
        return Report(SUSPICIOUS, f"contacts {evidence['urls'][0][:160]}", evidence, seconds)
    if evidence.get("files_written") or evidence.get("activex"):
        return Report(SUSPICIOUS, "uses Windows Script Host objects", evidence, seconds)
    return Report(CLEAN, "the script did nothing of note", evidence, seconds)
