"""Real files for extraction tests: MIME messages, PDFs, OOXML packages, QR images."""

from __future__ import annotations

import base64
import io
import zipfile
import zlib

import segno
from PIL import Image


def qr_png(text: str, scale: int = 4) -> bytes:
    """qr_png - a PNG of a QR code holding text."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_jpeg(text: str) -> bytes:
    image = Image.open(io.BytesIO(qr_png(text, scale=6))).convert("L")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def pdf(text: str = "", link: str = "", qr: str = "") -> bytes:
    """pdf - a one-page PDF with a text line, a URI link annotation and a QR image."""
    objects: list[bytes] = []
    content = b""
    if text:
        content += b"BT /F1 12 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET\n"
    resources = b"/Font << /F1 5 0 R >>"
    image = b""
    if qr:
        picture = Image.open(io.BytesIO(qr_png(qr))).convert("L")
        raw = zlib.compress(picture.tobytes())
        image = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                 b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
                 % (picture.width, picture.height, len(raw)) + raw + b"\nendstream")
        content += b"q 200 0 0 200 72 400 cm /Im1 Do Q\n"
        resources += b" /XObject << /Im1 7 0 R >>"
    annots = b" /Annots [6 0 R]" if link else b""
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>")
    objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                   b"/Resources << " + resources + b" >>" + annots + b" >>")
    objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects.append(b"<< /Type /Annot /Subtype /Link /Rect [72 700 300 730] /Border [0 0 0] "
                   b"/A << /S /URI /URI (" + link.encode() + b") >> >>")
    if image:
        objects.append(image)
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, xref))
    return out.getvalue()


def docx(text_url: str, hyperlink: str, template: str) -> bytes:
    """docx - a minimal WordprocessingML package with a hyperlink and a remote template."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml",
                         '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                         'package/2006/content-types"><Default Extension="xml" '
                         'ContentType="application/xml"/></Types>')
        package.writestr("word/document.xml",
                         '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats'
                         '.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>See '
                         f'{text_url}</w:t></w:r></w:p></w:body></w:document>')
        package.writestr("word/_rels/document.xml.rels",
                         '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats'
                         '.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
                         'schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" '
                         f'Target="{hyperlink}" TargetMode="External"/>'
                         '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/'
                         'officeDocument/2006/relationships/styles" Target="styles.xml"/>'
                         '</Relationships>')
        package.writestr("word/_rels/settings.xml.rels",
                         '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats'
                         '.org/package/2006/relationships"><Relationship Id="rId9" Type="http://'
                         'schemas.openxmlformats.org/officeDocument/2006/relationships/'
                         f'attachedTemplate" Target="{template}" TargetMode="External"/>'
                         '</Relationships>')
    return out.getvalue()


def attachment(name: str, content_type: str, payload: bytes, inline_id: str = "") -> bytes:
    """attachment - one base64 MIME part carrying a file."""
    disposition = (f'inline; filename="{name}"\r\nContent-ID: <{inline_id}>' if inline_id
                   else f'attachment; filename="{name}"')
    return (f"Content-Type: {content_type}; name=\"{name}\"\r\nContent-Disposition: "
            f"{disposition}\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() + \
        base64.encodebytes(payload).replace(b"\n", b"\r\n")


def message(*parts: bytes, subject: str = "test") -> bytes:
    """message - a multipart/mixed message of the given (already built) parts."""
    out = (b"From: Dana Reyes <dana@example.org>\r\nTo: user@example.com\r\nSubject: "
           + subject.encode() + b"\r\nMessage-ID: <t@example.org>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n")
    for part in parts:
        out += b"--mixed\r\n" + part + (b"" if part.endswith(b"\r\n") else b"\r\n")
    return out + b"--mixed--\r\n"


def text_part(text: str, content_type: str = "text/plain", encoding: str = "8bit",
              charset: str = "utf-8") -> bytes:
    body = text.encode(charset)
    if encoding == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
    elif encoding == "quoted-printable":
        import binascii

        body = binascii.b2a_qp(body.replace(b"\r\n", b"\n"), istext=True).replace(b"\n", b"\r\n")
    return (f"Content-Type: {content_type}; charset={charset}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body + b"\r\n"
