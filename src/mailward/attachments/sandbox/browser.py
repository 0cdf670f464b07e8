"""The browser sandbox: HTML, SVG and URLs opened in headless Chromium.

The page is opened by Playwright driving Debian's Chromium (no browser is
downloaded) inside a confined child process (``confine``). Every request
that leaves the page is intercepted: the sample itself is served from a
name that cannot exist (``sample.invalid``), everything else is blocked
and recorded. What the page does is the evidence: files it offers for
download (HTML smuggling assembles them in the browser), password fields
and where their forms post, requests its scripts try to send, navigations
and dialogs.

SECURITY: the page's script runs, so it runs only in the child: a network
namespace with no way out, Chromium's request interception in front of
that, limits on time, memory and file size, and a throw-away directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailward.attachments.sandbox import CLEAN, ERROR, MALICIOUS, SUSPICIOUS, Report, Sample, SandboxError
from mailward.attachments.sandbox.confine import Limits, run_confined

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--disable-extensions", "--disable-default-apps", "--mute-audio"]
_ORIGIN = "http://sample.invalid/"
_ACTIVE_REQUESTS = {"document", "xhr", "fetch", "script", "websocket", "eventsource", "ping",
                    "other"}
_MAX_DOWNLOAD = 64 * 1024 * 1024
_KINDS = ("html", "svg", "hta")


class BrowserSandbox:
    """Detonates pages in Chromium; each ticket is a directory with the result."""

    name = "browser"

    def __init__(self, chromium: str, workdir: Path, limits: Limits) -> None:
        self.chromium = chromium
        self.workdir = workdir
        self.limits = limits

    @staticmethod
    def available(chromium: str) -> bool:
        try:
            import playwright  # noqa: F401
        except ImportError:
            return False
        return bool(shutil.which(chromium))

    def accepts(self, sample: Sample) -> bool:
        if sample.url:
            return sample.url.startswith(("http://", "https://"))
        return sample.kind in _KINDS or sample.name.lower().endswith(
            (".html", ".htm", ".svg", ".shtml", ".xhtml", ".hta"))

    def submit(self, sample: Sample) -> str:
        """submit - run the page now in the child; the ticket is its result file."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        job = Path(tempfile.mkdtemp(prefix="browser-", dir=self.workdir))
        target = sample.url
        if not target:
            name = _safe_name(sample.name, ".svg" if sample.kind == "svg" else ".html")
            (job / "sample").mkdir()
            (job / "sample" / name).write_bytes(sample.data)
            target = str(job / "sample" / name)
        outcome = run_confined(
            [sys.executable, "-m", "mailward.attachments.sandbox.browser", str(job), target,
             self.chromium, str(max(self.limits.seconds - 8, 3))], job, self.limits)
        report = _report(outcome.stdout, outcome.stderr, outcome.timed_out, outcome.seconds)
        (job / "report.json").write_text(json.dumps(report.as_dict()))
        _clean_job(job)
        return str(job / "report.json")

    def poll(self, ticket: str) -> Report | None:
        path = Path(ticket)
        if not path.exists():
            raise SandboxError(f"browser result {ticket} is gone")
        return Report.from_dict(json.loads(path.read_text()))


def _safe_name(name: str, default_suffix: str) -> str:
    base = "".join(ch for ch in name.rsplit("/", 1)[-1] if ch.isalnum() or ch in "._-")[:80]
    if not base.lower().endswith((".html", ".htm", ".svg", ".xhtml", ".shtml", ".hta")):
        base = (base or "sample") + default_suffix
    return base


def _clean_job(job: Path) -> None:
    for child in job.iterdir():
        if child.name != "report.json":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def _report(stdout: bytes, stderr: bytes, timed_out: bool, seconds: float) -> Report:
    """_report - the verdict from what the child saw (its last JSON line)."""
    lines = [line for line in stdout.splitlines() if line.startswith(b"{")]
    if not lines:
        reason = "timed out" if timed_out else stderr.decode("utf-8", "replace")[-300:]
        return Report(ERROR, f"the browser gave no result: {reason}", {}, seconds)
    seen = json.loads(lines[-1])
    return judge(seen, seconds)


def judge(seen: dict[str, Any], seconds: float = 0.0) -> Report:
    """judge - a verdict from the observations of one page."""
    reasons_bad, reasons_odd = [], []
    for item in seen.get("downloads", []):
        reasons_bad.append(f"offers the download {item.get('name')!r} "
                           f"({item.get('kind')}, {item.get('size')} bytes) built in the page")
    forms = [f for f in seen.get("forms", []) if f.get("password")]
    outside = [f for f in forms if f.get("action") and not f["action"].startswith(_ORIGIN)]
    if outside:
        reasons_bad.append(f"asks for a password and posts it to {outside[0]['action'][:200]}")
    elif seen.get("password_fields"):
        reasons_odd.append("asks for a password")
    active = [r for r in seen.get("blocked", []) if r.get("type") in _ACTIVE_REQUESTS]
    if active:
        hosts = sorted({urlsplit(r["url"]).hostname or r["url"][:60] for r in active})[:5]
        reasons_odd.append(f"tried to reach {', '.join(hosts)}")
    if seen.get("error"):
        return Report(ERROR, f"the page could not be analysed: {seen['error'][:300]}", seen,
                      seconds)
    if reasons_bad:
        return Report(MALICIOUS, "; ".join(reasons_bad + reasons_odd), seen, seconds)
    if reasons_odd:
        return Report(SUSPICIOUS, "; ".join(reasons_odd), seen, seconds)
    return Report(CLEAN, "the page did nothing of note", seen, seconds)


# The child: everything below runs confined, started by ``submit``.

async def _observe(job: Path, target: str, chromium: str, wait: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    seen: dict[str, Any] = {"blocked": [], "downloads": [], "dialogs": [], "forms": [],
                            "navigations": [], "password_fields": 0}
    sample_path = Path(target) if not target.startswith(("http://", "https://")) else None
    start_url = _ORIGIN + sample_path.name if sample_path else target

    async def route(route) -> None:
        request = route.request
        if sample_path is not None and request.url == start_url:
            content_type = "image/svg+xml" if sample_path.suffix == ".svg" else "text/html"
            await route.fulfill(body=sample_path.read_bytes(), content_type=content_type)
            return
        if len(seen["blocked"]) < 200:
            seen["blocked"].append({"url": request.url[:2000], "method": request.method,
                                    "type": request.resource_type,
                                    "navigation": request.is_navigation_request()})
        await route.abort("blockedbyclient")

    async def on_download(download) -> None:
        try:
            path = await download.path()
            data = Path(path).read_bytes()[:_MAX_DOWNLOAD] if path else b""
        except Exception as error:  # the download may fail half-way
            data = b""
            seen.setdefault("download_errors", []).append(str(error)[:200])
        from mailward.attachments.identify import identify

        seen["downloads"].append({"name": download.suggested_filename[:200],
                                  "url": download.url[:300], "size": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest(),
                                  "kind": identify(data) if data else "empty"})

    clock = time.monotonic()
    async with async_playwright() as driver:
        seen["t_driver"] = round(time.monotonic() - clock, 3)
        browser = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS,
                                               downloads_path=str(job / "downloads"))
        context = await browser.new_context(accept_downloads=True, java_script_enabled=True,
                                            service_workers="block")
        await context.route("**/*", route)
        page = await context.new_page()
        seen["t_launch"] = round(time.monotonic() - clock, 3)
        pending: list[asyncio.Task] = []
        page.on("download", lambda d: pending.append(asyncio.ensure_future(on_download(d))))
        page.on("dialog", lambda d: (seen["dialogs"].append(d.message[:300]),
                                     asyncio.ensure_future(d.dismiss())))
        page.on("framenavigated", lambda f: seen["navigations"].append(f.url[:500]))
        context.on("page", lambda p: seen.setdefault("popups", []).append(p.url[:500]))
        try:
            await page.goto(start_url, wait_until="load", timeout=wait * 1000)
        except Exception as error:
            seen["load_error"] = str(error)[:300]
        seen["t_load"] = round(time.monotonic() - clock, 3)
        await page.wait_for_timeout(min(2000, wait * 500))
        try:
            seen["forms"] = await page.eval_on_selector_all(
                "form", "fs => fs.map(f => ({action: f.action, method: f.method, "
                "password: !!f.querySelector('input[type=password]')}))")
            seen["password_fields"] = await page.eval_on_selector_all(
                "input[type=password]", "es => es.length")
            seen["title"] = (await page.title())[:200]
        except Exception as error:
            seen["dom_error"] = str(error)[:300]
        if pending:
            await asyncio.wait(pending, timeout=wait)
        seen["t_observed"] = round(time.monotonic() - clock, 3)
        await browser.close()
        seen["t_closed"] = round(time.monotonic() - clock, 3)
    return seen


def main() -> None:
    """main - observe one page and print the observations as one JSON line."""
    job, target, chromium, wait = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    started = time.monotonic()
    try:
        seen = asyncio.run(_observe(job, target, chromium, wait))
    except Exception as error:
        seen = {"error": f"{type(error).__name__}: {error}"[:500]}
    seen["took"] = round(time.monotonic() - started, 3)
    sys.stdout.write(json.dumps(seen) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
