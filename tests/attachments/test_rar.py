"""RAR archives opened for real: unar decompresses, a real clamd judges.

The archives are written by ``tests.attachments.rar`` (RAR 4 and RAR 5,
plain and AES-256 encrypted); the members are extracted by the installed
unar under the limits of ``mailward.attachments.rar``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import struct
import zlib

import pytest

from mailward.attachments import rar as rar_module
from mailward.attachments.files import FileNode, UnpackLimits, _Budget, unpack, walk
from mailward.content.antivirus import scan_targets
from mailward.content.clamav import ClamavEngine, ClamdClient
from mailward.message import Message
from tests.attachments import samples
from tests.attachments.rar import rar4_of, rar5_of
from tests.attachments.test_check import analyse, listed, symbols
from tests.conftest import need
from tests.content.clamd_support import EICAR_SIGNATURE, clamd  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def unar():
    need(shutil.which("unar") is not None, "unar (Debian package unar)")


def tree(name: str, data: bytes, passwords: list[str] | None = None) -> dict[str, FileNode]:
    node = FileNode(name, data)
    unpack(node, _Budget(UnpackLimits(), passwords or []))
    return {n.path: n for n in walk([node])}


def test_eicar_in_rar4_is_extracted_and_found_by_clamd(clamd):  # noqa: F811
    archive = rar4_of({"docs/readme.com": samples.EICAR, "note.txt": b"hello"})
    message = Message(samples.message([("invoice.rar", "application/x-rar", archive)]))
    engine = ClamavEngine(ClamdClient(str(clamd.socket_path), 10), max_size=1024 * 1024)
    found = {}
    for node in scan_targets(message):
        result = asyncio.run(engine.scan(node))
        if result.malicious:
            found[node.path] = result.signature
    member = "invoice.rar > docs/readme.com"
    assert found[member].startswith(EICAR_SIGNATURE)
    assert "invoice.rar > note.txt" not in found
    [node] = [n for n in message.files if n.path == member]
    assert node.data == samples.EICAR and not node.problems


def test_zip_inside_rar5_is_recursed_into():
    inner = samples.zip_of({"invoice.js": samples.JS_DROPPER})
    raw = samples.message([("order.rar", "application/vnd.rar",
                            rar5_of({"order/inner.zip": inner}))])
    _, findings, _ = analyse(raw)
    files = listed(findings)
    assert files["order.rar"]["type"] == "rar"
    script = files["order.rar > order/inner.zip > invoice.js"]
    assert script["type"] == "script-js"
    assert "ATTACH_DANGEROUS_TYPE" in script["findings"]


@pytest.mark.parametrize("check", [False, True], ids=["crc", "check-value"])
def test_encrypted_rar5_opens_with_the_password_in_the_body(check):
    archive = rar5_of({"invoice.js": samples.JS_DROPPER}, password="Xq7-4471",
                      check=check)
    raw = samples.message([("invoice.rar", "application/x-rar", archive)],
                          body="Your invoice is attached. The password is: Xq7-4471.")
    message, findings, _ = analyse(raw)
    member = listed(findings)["invoice.rar > invoice.js"]
    assert member["type"] == "script-js"
    assert {"ATTACH_DANGEROUS_TYPE", "ATTACH_ENCRYPTED_OPENED"} <= set(member["findings"])
    assert "ATTACH_ENCRYPTED_UNSCANNABLE" not in symbols(findings)
    [node] = [n for n in message.files if n.name == "invoice.js"]
    assert node.password == "Xq7-4471" and node.data == samples.JS_DROPPER


@pytest.mark.parametrize("check", [False, True], ids=["crc", "check-value"])
def test_encrypted_rar5_without_the_password_is_unscannable(check):
    archive = rar5_of({"invoice.js": samples.JS_DROPPER}, password="Xq7-4471",
                      check=check)
    raw = samples.message([("invoice.rar", "application/x-rar", archive)],
                          body="Your invoice is attached; call us for the code word.")
    message, findings, _ = analyse(raw)
    assert "ATTACH_ENCRYPTED_UNSCANNABLE" in symbols(findings)
    assert all(n.data != samples.JS_DROPPER for n in message.files)


@pytest.mark.parametrize("known", [True, False], ids=["password", "no-password"])
def test_rar5_with_encrypted_headers_lists_only_with_the_password(known):
    archive = rar5_of({"scan/invoice.js": samples.JS_DROPPER, "readme.txt": b"hello"},
                      password="Xq7-4471", check=True, headers=True)
    body = ("The password is: Xq7-4471." if known else "Call us for the code word.")
    raw = samples.message([("invoice.rar", "application/x-rar", archive)], body=body)
    message, findings, _ = analyse(raw)
    files = listed(findings)
    if known:
        script = files["invoice.rar > scan/invoice.js"]
        assert {"ATTACH_DANGEROUS_TYPE", "ATTACH_ENCRYPTED_OPENED"} <= set(script["findings"])
        assert files["invoice.rar > readme.txt"]["type"] == "text"
        assert "ATTACH_ENCRYPTED_UNSCANNABLE" not in symbols(findings)
    else:
        assert set(files) == {"invoice.rar", "invoice.rar > (encrypted rar headers)"}
        assert "ATTACH_ENCRYPTED_UNSCANNABLE" in symbols(findings)


def test_many_members_are_read_in_one_run_and_stop_at_the_member_limit():
    members = {f"part-{number:03}.txt": b"x" * (number + 1) for number in range(300)}
    nodes = tree("many.rar", rar5_of(members))
    assert [n.data for n in list(nodes.values())[1:]] == list(members.values())
    node = FileNode("many.rar", rar5_of(members))
    unpack(node, _Budget(UnpackLimits(max_members=100), []))
    assert len(node.children) == 100
    assert any(p.startswith("ARCHIVE_TOO_MANY_MEMBERS") for p in node.problems)


def test_several_encrypted_members_open_with_one_password():
    members = {f"doc-{number}.txt": bytes([65 + number]) * 40 for number in range(20)}
    archive = rar5_of(members, password="Xq7-4471", check=True)
    nodes = tree("docs.rar", archive, ["wrong", "Xq7-4471"])
    opened = list(nodes.values())[1:]
    assert [n.data for n in opened] == list(members.values())
    assert all(n.password == "Xq7-4471" and n.notes for n in opened)


def _patched_unpacked_size(archive: bytes, size: int) -> bytes:
    """_patched_unpacked_size - a RAR 4 whose first member's header claims size."""
    data = bytearray(archive)
    start = 7 + 13  # the marker and the archive header
    data[start + 11:start + 15] = struct.pack("<I", size)
    length = struct.unpack("<H", data[start + 5:start + 7])[0]
    data[start:start + 2] = struct.pack("<H", zlib.crc32(data[start + 2:start + length])
                                        & 0xFFFF)
    return bytes(data)


def test_rar_bomb_is_a_problem_not_a_memory_blow_up():
    bomb = _patched_unpacked_size(rar4_of({"big.bin": b"z" * 1000}), 900 * 1024 * 1024)
    nodes = tree("bomb.rar", bomb)
    assert any(p.startswith("ARCHIVE_BOMB") for p in nodes["bomb.rar"].problems)
    assert list(nodes) == ["bomb.rar"]


def test_member_whose_content_disagrees_with_its_header_is_unreadable():
    lying = _patched_unpacked_size(rar4_of({"l.txt": b"q" * 100, "ok.txt": b"fine"}), 10)
    nodes = tree("lie.rar", lying)
    member = nodes["lie.rar > l.txt"]
    assert member.data == b""
    assert member.problems and member.problems[0].startswith("ARCHIVE_MEMBER_UNREADABLE")
    assert nodes["lie.rar > ok.txt"].data == b"fine"


@pytest.mark.parametrize("cut", [60, 3000])
def test_truncated_rar_is_a_problem_never_clean(cut):
    archive = rar4_of({"a.txt": b"x" * 5000, "b.exe": b"MZ" + b"\0" * 100})[:cut]
    raw = samples.message([("cut.rar", "application/x-rar", archive)])
    message, _, _ = analyse(raw)
    problems = [p for n in message.files for p in n.problems]
    assert any(p.startswith(("ARCHIVE_CORRUPT", "ARCHIVE_MEMBER_UNREADABLE"))
               for p in problems)
    assert all(n.data != b"x" * 5000 for n in message.files)


def test_garbage_after_the_rar_signature_is_corrupt():
    nodes = tree("junk.rar", b"Rar!\x1a\x07\x01\x00" + b"\xff" * 300)
    assert nodes["junk.rar"].problems[0].startswith("ARCHIVE_CORRUPT")


def test_without_unar_names_are_judged_and_content_is_not_scanned(monkeypatch, caplog):
    monkeypatch.setattr(rar_module, "UNAR", "mailward-no-such-unar")
    monkeypatch.setattr(rar_module, "_missing_logged", False)
    archive = rar5_of({"invoice.pdf.exe": b"MZ" + b"\0" * 100})
    raw = samples.message([("invoice.rar", "application/x-rar", archive)])
    with caplog.at_level(logging.WARNING, logger="mailward.attachments"):
        message, findings, _ = analyse(raw)
    [member] = [n for n in message.files if n.name == "invoice.pdf.exe"]
    assert member.data == b"" and "not decompressed" in member.problems[0]
    assert "ATTACH_DANGEROUS_TYPE" in listed(findings)["invoice.rar > invoice.pdf.exe"][
        "findings"]
    assert "unar is not installed" in caplog.text


def test_the_tool_is_killed_at_its_timeout(tmp_path):
    run = rar_module.run_bounded(["/bin/sleep", "30"], str(tmp_path), 100, 0.5)
    assert run.timed_out and run.returncode is not None


def test_the_tool_output_is_cut_at_the_bound(tmp_path):
    run = rar_module.run_bounded(["/usr/bin/yes"], str(tmp_path), 1 << 20, 10)
    assert run.overflow and len(run.data) == (1 << 20) + 1


def test_the_tool_cannot_write_files(tmp_path):
    run = rar_module.run_bounded(["/bin/sh", "-c", "echo data > written; echo done"],
                                 str(tmp_path), 100, 10)
    assert run.returncode == -signal.SIGXFSZ and run.data == b""
    assert (tmp_path / "written").stat().st_size == 0
