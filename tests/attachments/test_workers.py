"""Per-file bounds of the analysers: real worker processes, really killed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mailward.attachments import check as check_module
from mailward.attachments.check import AttachmentCheck, FilePolicy
from mailward.attachments.files import Note
from mailward.attachments.identify import DEFAULT_DANGEROUS_EXTENSIONS, DEFAULT_DANGEROUS_KINDS
from mailward.attachments.workers import AnalyserPool
from mailward.message import Message
from tests.attachments import samples


def spinning(node) -> list[Note]:
    """spinning - an analyser caught in a loop, as a crafted file makes a parser."""
    while True:
        pass


def swelling(node) -> list[Note]:
    """swelling - an analyser that builds ever larger structures."""
    held = []
    while True:
        held.append(bytearray(64 << 20))


def crashing(node) -> list[Note]:
    """crashing - an analyser whose native parser brings the process down."""
    os.kill(os.getpid(), signal.SIGSEGV)
    return []


def failing(node) -> list[Note]:
    raise ValueError("broken xref table")


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def pool():
    workers = AnalyserPool(size=1, file_seconds=1.5, memory=512 << 20)
    yield workers
    workers.close()


def analyse(pool, attachments):
    check = AttachmentCheck(FilePolicy(list(DEFAULT_DANGEROUS_EXTENSIONS),
                                       list(DEFAULT_DANGEROUS_KINDS)), 60.0, pool=pool)
    return check.analyse(Message(samples.message(attachments)).files)[0]


def by_symbol(findings) -> dict[str, list]:
    found: dict[str, list] = {}
    for finding in findings:
        found.setdefault(finding.symbol, []).append(finding)
    return found


def test_a_spinning_analyser_is_killed_and_the_next_file_analysed(pool, monkeypatch):
    monkeypatch.setitem(check_module.ANALYSERS, "pdf", spinning)
    started = time.monotonic()
    findings = analyse(pool, [("report.pdf", "application/pdf", PDF),
                              ("page.html", "text/html", samples.smuggling_page(
                                  samples.zip_of({"a.js": samples.JS_DROPPER})))])
    elapsed = time.monotonic() - started
    found = by_symbol(findings)
    [timeout] = found["ATTACH_ANALYSIS_TIMEOUT"]
    assert timeout.data["path"] == "report.pdf" and "killed" in timeout.detail
    assert elapsed < 15
    # The worker was replaced: the page after the PDF was analysed.
    files = {f.data["path"]: f.data for f in found["ATTACH_FILE"]}
    assert "ATTACH_ANALYSIS_TIMEOUT" in files["report.pdf"]["findings"]
    assert "ATTACH_ANALYSIS_TIMEOUT" not in files["page.html"]["findings"]
    assert files["page.html"]["findings"]


def test_a_swelling_analyser_hits_the_memory_limit(pool, monkeypatch):
    monkeypatch.setitem(check_module.ANALYSERS, "pdf", swelling)
    found = by_symbol(analyse(pool, [("report.pdf", "application/pdf", PDF)]))
    assert [f.data["path"] for f in found["ATTACH_ANALYSIS_MEMORY"]] == ["report.pdf"]


def test_a_failing_analyser_is_a_failure_and_the_worker_is_kept(pool, monkeypatch):
    monkeypatch.setitem(check_module.ANALYSERS, "pdf", failing)
    found = by_symbol(analyse(pool, [("a.pdf", "application/pdf", PDF),
                                     ("b.pdf", "application/pdf", PDF)]))
    assert len(found["ATTACH_ANALYSIS_FAILED"]) == 2
    assert "broken xref table" in found["ATTACH_ANALYSIS_FAILED"][0].detail


def test_the_pool_gives_the_same_findings_as_the_analysers_in_process(pool):
    raw = samples.message([("invoice.docx", "application/octet-stream",
                            samples.docx_with_external_template())])
    check = AttachmentCheck(FilePolicy(list(DEFAULT_DANGEROUS_EXTENSIONS),
                                       list(DEFAULT_DANGEROUS_KINDS)), 60.0)
    alone = check.analyse(Message(raw).files)[0]
    pooled = analyse(pool, [("invoice.docx", "application/octet-stream",
                             samples.docx_with_external_template())])
    assert "ATTACH_TEMPLATE_INJECTION" in {f.symbol for f in pooled}
    assert sorted((f.symbol, f.detail) for f in pooled) == \
        sorted((f.symbol, f.detail) for f in alone)


def test_a_crashing_worker_is_a_failure_and_is_replaced(pool, monkeypatch):
    monkeypatch.setitem(check_module.ANALYSERS, "pdf", crashing)
    findings = analyse(pool, [("a.pdf", "application/pdf", PDF),
                              ("invoice.docx", "application/octet-stream",
                               samples.docx_with_external_template())])
    found = by_symbol(findings)
    [failed] = found["ATTACH_ANALYSIS_FAILED"]
    assert failed.data["path"] == "a.pdf" and "died" in failed.detail
    assert "ATTACH_TEMPLATE_INJECTION" in found
