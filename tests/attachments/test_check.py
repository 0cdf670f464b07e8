"""The attachment check over built samples, the field cases and the malware corpus."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from mailward.attachments.check import AttachmentCheck, FilePolicy
from mailward.attachments.identify import DEFAULT_DANGEROUS_EXTENSIONS, DEFAULT_DANGEROUS_KINDS
from mailward.message import Message
from tests.attachments import samples

CASES = Path(__file__).resolve().parents[3] / "shared" / "cases"


def analyse(raw: bytes):
    check = AttachmentCheck(FilePolicy(list(DEFAULT_DANGEROUS_EXTENSIONS),
                                       list(DEFAULT_DANGEROUS_KINDS)), 20.0)
    message = Message(raw)
    findings, submit = check.analyse(message.files)
    return message, findings, submit


def symbols(findings) -> set[str]:
    return {f.symbol for f in findings}


def listed(findings) -> dict[str, dict]:
    return {f.data["path"]: f.data for f in findings if f.symbol == "ATTACH_FILE"}


def test_every_file_is_listed_with_path_type_and_hash():
    raw = samples.message([("pack.zip", "application/zip", samples.nested_zip_with_eicar())])
    message, findings, _ = analyse(raw)
    files = listed(findings)
    path = "pack.zip > middle.zip > inner.zip > docs/readme.com"
    assert set(files) == {"pack.zip", "pack.zip > middle.zip", "pack.zip > middle.zip > inner.zip",
                          path, "pack.zip > note.txt"}
    assert files[path]["type"] == "text"
    assert files[path]["sha256"] == __import__("hashlib").sha256(samples.EICAR).hexdigest()
    assert "ATTACH_DANGEROUS_TYPE" in files[path]["findings"]
    [node] = [n for n in message.files if n.path == path]
    assert node.data == samples.EICAR


def test_zip_inside_iso_with_lnk_is_unpacked_and_flagged():
    raw = samples.message([("order.iso", "application/octet-stream",
                            samples.zip_in_iso_with_lnk())])
    _, findings, _ = analyse(raw)
    files = listed(findings)
    assert files["order.iso"]["type"] == "iso"
    lnk = files["order.iso > invoice.zip > Invoice.pdf.lnk"]
    assert lnk["type"] == "lnk"
    assert {"ATTACH_DANGEROUS_TYPE", "ATTACH_DOUBLE_EXTENSION"} <= set(lnk["findings"])


def test_encrypted_zip_opens_with_the_password_in_the_body():
    archive = samples.encrypted_zip({"invoice.js": samples.JS_DROPPER}, "Xq7-4471")
    raw = samples.message([("invoice.zip", "application/zip", archive)],
                          body="Your invoice is attached. The password is: Xq7-4471.")
    message, findings, submit = analyse(raw)
    files = listed(findings)
    member = files["invoice.zip > invoice.js"]
    assert member["type"] == "script-js"
    assert {"ATTACH_DANGEROUS_TYPE", "ATTACH_ENCRYPTED_OPENED"} <= set(member["findings"])
    assert "ATTACH_ENCRYPTED_UNSCANNABLE" not in symbols(findings)
    assert [n.password for n in message.files if n.name == "invoice.js"] == ["Xq7-4471"]


def test_encrypted_zip_without_the_password_is_unscannable():
    archive = samples.encrypted_zip({"invoice.js": samples.JS_DROPPER}, "Xq7-4471")
    raw = samples.message([("invoice.zip", "application/zip", archive)],
                          body="Your invoice is attached; call us for the code word.")
    _, findings, _ = analyse(raw)
    assert "ATTACH_ENCRYPTED_UNSCANNABLE" in symbols(findings)


@pytest.mark.parametrize("body", ["Kennwort: geheim42", "contraseña: geheim42",
                                  "mot de passe : geheim42", "pw=geheim42",
                                  "Password:\r\ngeheim42"])
def test_passwords_are_found_in_several_languages(body):
    archive = samples.encrypted_zip({"a.txt": b"text"}, "geheim42")
    raw = samples.message([("a.zip", "application/zip", archive)], body=body)
    message, findings, _ = analyse(raw)
    assert "ATTACH_ENCRYPTED_UNSCANNABLE" not in symbols(findings)
    assert [n.data for n in message.files if n.name == "a.txt"] == [b"text"]


def test_ooxml_with_external_template_is_template_injection():
    raw = samples.message([("offer.docx", "application/vnd.openxmlformats-officedocument."
                            "wordprocessingml.document", samples.docx_with_external_template())])
    _, findings, _ = analyse(raw)
    [finding] = [f for f in findings if f.symbol == "ATTACH_TEMPLATE_INJECTION"]
    assert finding.data["target"] == "https://templates.example.net/t.dotm"
    assert listed(findings)["offer.docx"]["type"] == "ooxml"


def test_pdf_with_openaction_javascript():
    raw = samples.message([("scan.pdf", "application/pdf", samples.pdf_openaction_js())])
    _, findings, submit = analyse(raw)
    assert {"ATTACH_PDF_JAVASCRIPT", "ATTACH_PDF_AUTO_ACTION"} <= symbols(findings)


def test_html_smuggling_page_and_its_payload():
    payload = samples.zip_of({"Remittance.js": samples.JS_DROPPER})
    raw = samples.message([("remit.html", "text/html", samples.smuggling_page(payload))])
    _, findings, _ = analyse(raw)
    assert "ATTACH_HTML_SMUGGLING" in symbols(findings)
    files = listed(findings)
    assert "ATTACH_DANGEROUS_TYPE" in files["remit.html > smuggled-1.zip > Remittance.js"]["findings"]


def test_js_dropper_is_a_dangerous_type():
    raw = samples.message([("invoice.js", "application/javascript", samples.JS_DROPPER)])
    _, findings, _ = analyse(raw)
    assert listed(findings)["invoice.js"]["type"] == "script-js"
    assert "ATTACH_DANGEROUS_TYPE" in symbols(findings)


def test_zip_bomb_is_a_problem_not_a_memory_blow_up():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.bin", b"\0" * (200 * 1024 * 1024))
    raw = samples.message([("bomb.zip", "application/zip", out.getvalue())])
    message = Message(raw)
    [root] = [n for n in message.files if n.name == "bomb.zip"]
    assert any(p.startswith("ARCHIVE_BOMB") for p in root.problems)
    assert sum(n.size for n in message.files if n.parent) == 0


def test_thousands_of_members_stop_at_the_limit():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for number in range(1500):
            archive.writestr(f"f{number}.txt", b"x")
    message = Message(samples.message([("many.zip", "application/zip", out.getvalue())]))
    [root] = [n for n in message.files if n.name == "many.zip"]
    assert any(p.startswith("ARCHIVE_TOO_MANY_MEMBERS") for p in root.problems)
    assert len(root.children) == 1000


def test_deep_nesting_stops_at_the_depth_limit():
    data = b"core"
    for level in range(8):
        data = samples.zip_of({f"level{level}.zip" if level else "core.txt": data})
    message = Message(samples.message([("deep.zip", "application/zip", data)]))
    assert any(p.startswith("ARCHIVE_TOO_DEEP") for n in message.files for p in n.problems)


def test_truncated_zip_is_corrupt_and_never_clean():
    data = samples.zip_of({"a.exe": b"MZ" + b"\0" * 500})[:-30]
    message = Message(samples.message([("cut.zip", "application/zip", data)]))
    [root] = [n for n in message.files if n.name == "cut.zip"]
    assert root.problems and root.problems[0].startswith("ARCHIVE_CORRUPT")


def test_other_archive_formats_are_opened():
    import bz2
    import gzip
    import lzma
    import tarfile

    import py7zr

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("run.vbs")
        info.size = 12
        archive.addfile(info, io.BytesIO(b"MsgBox \"hi\"\n"))
    seven = io.BytesIO()
    with py7zr.SevenZipFile(seven, "w") as archive:
        archive.writestr(b"echo test", "start.bat")
    raw = samples.message([("a.tar.gz", "application/gzip", gzip.compress(tar.getvalue())),
                           ("b.tar.bz2", "application/x-bzip2", bz2.compress(tar.getvalue())),
                           ("c.tar.xz", "application/x-xz", lzma.compress(tar.getvalue())),
                           ("d.7z", "application/x-7z-compressed", seven.getvalue())])
    _, findings, _ = analyse(raw)
    files = listed(findings)
    for path in ("a.tar.gz > a.tar > run.vbs", "b.tar.bz2 > b.tar > run.vbs",
                 "c.tar.xz > c.tar > run.vbs", "d.7z > start.bat"):
        assert "ATTACH_DANGEROUS_TYPE" in files[path]["findings"], path


def test_attached_message_file_is_opened():
    inner = samples.message([("tool.exe", "application/octet-stream", b"MZ" + b"\0" * 200)])
    raw = samples.message([("fwd.eml", "application/octet-stream", inner)])
    _, findings, _ = analyse(raw)
    assert "ATTACH_DANGEROUS_TYPE" in listed(findings)["fwd.eml > tool.exe"]["findings"]


def test_executable_named_as_a_document_is_disguised():
    raw = samples.message([("report.pdf", "application/pdf", b"MZ" + b"\0" * 300)])
    _, findings, _ = analyse(raw)
    assert {"ATTACH_DANGEROUS_TYPE", "ATTACH_EXECUTABLE_DISGUISED"} <= symbols(findings)


# The field cases: each names the right behaviour.

def case(name: str) -> bytes:
    path = next(CASES.glob(f"{name}_*.eml"), None)
    if path is None:
        pytest.skip(f"case {name} not present")
    return path.read_bytes()


def test_c27_html_smuggling_is_flagged_and_its_payload_judged():
    _, findings, _ = analyse(case("C27"))
    assert "ATTACH_HTML_SMUGGLING" in symbols(findings)
    files = listed(findings)
    [js] = [p for p in files if p.endswith("Remittance_2026.js")]
    assert "ATTACH_DANGEROUS_TYPE" in files[js]["findings"]


def test_c29_zip_name_mismatch_is_a_finding_and_both_names_judged():
    message, findings, _ = analyse(case("C29"))
    [mismatch] = [f for f in findings if f.symbol == "ATTACH_ZIP_NAME_MISMATCH"]
    assert mismatch.data == {"central": "invoice.wsf", "local": "invoice.doc"}
    files = listed(findings)
    assert "ATTACH_DANGEROUS_TYPE" in files["invoice.zip > invoice.wsf"]["findings"]
    assert not any(n.problems for n in message.files)


def test_c31_rtlo_name_is_an_exe_and_escaped():
    _, findings, _ = analyse(case("C31"))
    found = symbols(findings)
    assert {"ATTACH_BIDI_NAME", "ATTACH_DANGEROUS_TYPE", "ATTACH_TYPE_MISMATCH"} <= found
    [bidi] = [f for f in findings if f.symbol == "ATTACH_BIDI_NAME"]
    assert bidi.data["extension"] == "exe"
    assert "\u202e" not in bidi.detail and "\\u202e" in bidi.detail


def test_c33_img_is_iso9660_and_the_lnk_is_flagged():
    _, findings, _ = analyse(case("C33"))
    files = listed(findings)
    assert files["PO_LP907_pdf.img"]["type"] == "iso"
    assert "ATTACH_DANGEROUS_TYPE" in files["PO_LP907_pdf.img > PO_LP907_PDF.LNK"]["findings"]


# The harmless malware corpus.

CORPUS_EXPECTED = {
    "olevba/sample_with_vba.ppt": {"ATTACH_MACRO", "ATTACH_MACRO_AUTOEXEC"},
    "excel4-macros/excel4_sample_macro.xls": {"ATTACH_XLM_MACRO", "ATTACH_MACRO_AUTOEXEC"},
    "excel4-macros/excel4_sample_macro.xlsm": {"ATTACH_XLM_MACRO"},
    "excel4-macros/excel4_sample_macro.slk": {"ATTACH_XLM_MACRO"},
    "msodde/dde-test.docx": {"ATTACH_DDE"},
    "msodde/dde-test.xlsx": {"ATTACH_DDE"},
    "msodde/dde-in-csv.csv": {"ATTACH_DDE"},
    "msodde/dde-test-from-office2016.doc.zip": {"ATTACH_DDE", "ATTACH_ENCRYPTED_OPENED"},
    "oleobj/external_link/sample_with_external_link_to_doc.docx": {"ATTACH_EXTERNAL_LINK"},
    "oleobj/sample_with_calc_embedded.doc": {"ATTACH_OLE_OBJECT", "ATTACH_DANGEROUS_TYPE"},
    "oleobj/sample_with_lnk_file.doc": {"ATTACH_DANGEROUS_TYPE"},
    "encrypted/autostart-encrypt-standardpassword.xlsm": {"ATTACH_ENCRYPTED_OPENED",
                                                          "ATTACH_MACRO_AUTOEXEC"},
    "encrypted/encrypted.docx": {"ATTACH_ENCRYPTED_UNSCANNABLE"},
}
CORPUS_CLEAN = ["msodde/harmless-clean.docx", "msodde/harmless-clean.doc",
                "msodde/harmless-clean.docm", "basic/text"]


def corpus_file(shared: Path, relative: str) -> tuple[str, bytes]:
    path = shared / "corpus/malware/oletools-test-data" / relative
    return path.name, path.read_bytes()


@pytest.mark.parametrize("relative", sorted(CORPUS_EXPECTED))
def test_corpus_documents_raise_their_findings(shared, relative):
    name, data = corpus_file(shared, relative)
    _, findings, _ = analyse(samples.message([(name, "application/octet-stream", data)]))
    assert CORPUS_EXPECTED[relative] <= symbols(findings)


@pytest.mark.parametrize("relative", CORPUS_CLEAN)
def test_corpus_clean_documents_raise_nothing(shared, relative):
    name, data = corpus_file(shared, relative)
    _, findings, _ = analyse(samples.message([(name, "application/octet-stream", data)]))
    assert symbols(findings) == {"ATTACH_FILE"}


def test_corpus_pdf_with_openaction(shared):
    data = (shared / "corpus/malware/synthetic/pdf-openaction-javascript.pdf").read_bytes()
    _, findings, _ = analyse(samples.message([("a.pdf", "application/pdf", data)]))
    assert {"ATTACH_PDF_JAVASCRIPT", "ATTACH_PDF_AUTO_ACTION"} <= symbols(findings)


def test_every_corpus_file_is_analysed_without_a_crash(shared):
    root = shared / "corpus/malware"
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        _, findings, _ = analyse(samples.message([(path.name, "application/octet-stream",
                                                   path.read_bytes())]))
        assert "ATTACH_ANALYSIS_FAILED" not in symbols(findings), path
