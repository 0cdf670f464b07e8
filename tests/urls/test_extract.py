"""Extraction finds links in every place a reader or a mail client would see them."""

from __future__ import annotations

import base64
import io
import random
import time

import pytest

from mailward.message import Message
from tests.urls import builders as b


def places(raw: bytes) -> dict[str, str]:
    """places - url -> where it was first found."""
    found: dict[str, str] = {}
    for item in Message(raw).url_extraction.places:
        found.setdefault(item.url, item.where)
    return found


# Text parts.


TEXT = ("Links: https://plain.example.net/a?b=1, www.bare.example.org/x and "
        "login.noscheme.example.com/verify.\r\n"
        "Wrapped: <https://angle.example.net/a/very/long/\r\n path/file.html>\r\n"
        "Quoted (see https://paren.example.net/wiki/Foo_(bar)). Also https://zero\u200bwidth"
        ".example.net/z! and https:\\\\back.example.net\\p\r\n"
        "Not links: report.pdf, version 1.2.3, mailto:x@example.org\r\n")


def test_text_urls_with_and_without_scheme():
    found = places(b.message(b.text_part(TEXT)))
    assert found["https://plain.example.net/a?b=1"] == "text"
    assert found["http://www.bare.example.org/x"] == "text"
    assert found["http://login.noscheme.example.com/verify"] == "text:no-scheme"
    assert "https://angle.example.net/a/very/long/path/file.html" in found
    assert "https://paren.example.net/wiki/Foo_(bar)" in found
    assert "https://zerowidth.example.net/z" in found
    assert "https://back.example.net/p" in found
    assert not any("report.pdf" in url or "1.2.3" in url for url in found)


def test_quoted_printable_soft_breaks_do_not_split_links(shared):
    found = places((shared / "cases/C20_url_qp_softbreak.eml").read_bytes())
    for url in ("https://login.example.net/verify?u=1", "https://cdn.example.net/track",
                "https://files.example.net/doc/12345/view", "https://files.example.net/doc/678"):
        assert url in found


def test_base64_text_part_is_decoded():
    found = places(b.message(b.text_part("go to https://b64.example.net/x", encoding="base64")))
    assert "https://b64.example.net/x" in found


# HTML parts.


HTML = """<html><head><base href="https://base.example.net/dir/">
<meta http-equiv="refresh" content="0; url='https://refresh.example.net/r'">
<style>body { background: url("https://css.example.net/bg.png") }
@import 'https://import.example.net/s.css';</style></head><body>
<a href="rel/page.html">relative</a>
<a href="https&#58;//entity.example.net/&#x61;b">entity</a>
<a href="https://first.example.net/" href="https://second.example.net/">dup</a>
<a/href="https://slash.example.net/">slash</a>
<map><area href="https://area.example.net/" alt="x"></map>
<form action="https://form.example.net/post"><button formaction="https://button.example.net/">
</button></form>
<iframe src="https://frame.example.net/"></iframe>
<img src="https://img.example.net/i.png" srcset="https://srcset.example.net/1x.png 1x, https://srcset2.example.net/2x.png 2x">
<table><tr><td background="https://bgattr.example.net/b.gif"></td></tr></table>
<div style="background-image:url(https://inline-css.example.net/x.png)">x</div>
<a href="//schemerel.example.net/t">scheme relative</a>
<a href="javascript:alert(document.cookie)">js</a>
<a href="data:text/html;base64,PHNjcmlwdD4=">data</a>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<svg><a xlink:href="https://svg.example.net/s"><text>svg</text></a></svg>
<p>Visible text link https://visible.example.net/v</p>
<p style="display:none">hidden https://hidden.example.net/h</p>
<a href="https://unterminated.example.net/
"""


def test_html_every_place():
    message = Message(b.message(b.text_part(HTML, "text/html")))
    found = {item.url: item.where for item in message.url_extraction.places}
    expected = {
        "https://base.example.net/dir/rel/page.html": "html:a[href]",
        "https://refresh.example.net/r": "html:meta[refresh]",
        "https://css.example.net/bg.png": "html:css",
        "https://import.example.net/s.css": "html:css",
        "https://entity.example.net/ab": "html:a[href]",
        "https://first.example.net/": "html:a[href]",
        "https://slash.example.net/": "html:a[href]",
        "https://area.example.net/": "html:area[href]",
        "https://form.example.net/post": "html:form[action]",
        "https://button.example.net/": "html:button[formaction]",
        "https://frame.example.net/": "html:iframe[src]",
        "https://img.example.net/i.png": "html:img[src]",
        "https://srcset.example.net/1x.png": "html:img[srcset]",
        "https://srcset2.example.net/2x.png": "html:img[srcset]",
        "https://bgattr.example.net/b.gif": "html:td[background]",
        "https://inline-css.example.net/x.png": "html:css",
        "https://schemerel.example.net/t": "html:a[href]",
        "https://svg.example.net/s": "html:a[xlink:href]",
        "https://visible.example.net/v": "html:text",
        "https://hidden.example.net/h": "html:hidden-text",
    }
    for url, where in expected.items():
        assert found.get(url) == where, url
    # browsers keep the first of duplicated attributes; the second is only in the markup
    assert found["https://second.example.net/"] == "html:source"
    assert found["https://unterminated.example.net/"] == "html:source"
    scripts = {(s.scheme, s.where) for s in message.url_extraction.scripts}
    assert scripts == {("javascript", "html:a[href]"), ("data", "html:a[href]")}


def test_base_href_resolution(shared):
    found = places((shared / "cases/C22_url_base_href.eml").read_bytes())
    assert "https://evil.example.net/files/report/q4.html" in found
    assert "https://evil.example.net/files/logo.png" in found


def test_anchor_text_is_kept(shared):
    message = Message((shared / "cases/C24_url_homoglyph_idn.eml").read_bytes())
    texts = {item.url: item.text for item in message.url_extraction.places
             if item.where == "html:a[href]"}
    assert texts["https://xn--bnk-6cd.example/login"] == "https://bank.example/login"


def test_hidden_zero_font_content_still_gives_its_link(shared):
    found = places((shared / "cases/C26_zerofont.eml").read_bytes())
    assert found["https://evil.example.net/keep"] == "html:a[href]"


def test_fake_close_delimiter_does_not_hide_the_attachment(shared):
    found = places((shared / "cases/C06_mime_fake_close_boundary.eml").read_bytes())
    assert found["https://evil.example.net/login"] == "attachment:html:a[href]"


def test_unsigned_tail_after_dkim_l_is_read(shared):
    found = places((shared / "cases/C15_dkim_l_tag_appended.eml").read_bytes())
    assert "https://evil.example.net/mailbox" in found


# Attachments.


def test_pdf_annotation_text_and_qr_image():
    document = b.pdf(text="Pay at https://pdftext.example.net/pay now",
                     link="https://pdflink.example.net/x", qr="https://pdfqr.example.net/q")
    found = places(b.message(b.text_part("see attached"),
                             b.attachment("invoice.pdf", "application/pdf", document)))
    assert found["https://pdflink.example.net/x"] == "attachment:pdf:annotation"
    assert found["https://pdftext.example.net/pay"] == "attachment:pdf:text"
    assert found["https://pdfqr.example.net/q"] == "qr:pdf-page"


def test_ooxml_relationships_and_text():
    package = b.docx("https://doctext.example.net/t", "https://docrel.example.net/h",
                     "https://template.example.net/t.dotm")
    found = places(b.message(b.attachment(
        "offer.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        package)))
    assert found["https://docrel.example.net/h"] == "attachment:ooxml:relationship"
    assert found["https://template.example.net/t.dotm"] == "attachment:ooxml:relationship"
    assert found["https://doctext.example.net/t"] == "attachment:ooxml:text"


def test_ooxml_inside_a_zip():
    import io
    import zipfile

    package = b.docx("https://deep.example.net/t", "https://deeprel.example.net/h",
                     "https://deeptpl.example.net/t")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as outer:
        outer.writestr("docs/offer.docx", package)
    found = places(b.message(b.attachment("docs.zip", "application/zip", archive.getvalue())))
    assert found["https://deeprel.example.net/h"] == "attachment:ooxml:relationship"


def test_html_svg_calendar_and_shortcut_attachments():
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
           b'<a xlink:href="https://svgfile.example.net/s"><rect width="9" height="9"/></a></svg>')
    ics = (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Review\r\nDESCRIPTION:Join at https://m"
           b"eet.example.net/\r\n j/123 please\r\nURL:https://icsurl.example.net/e\r\n"
           b"END:VEVENT\r\nEND:VCALENDAR\r\n")
    shortcut = b"[InternetShortcut]\r\nURL=https://shortcut.example.net/run\r\n"
    page = b"<html><body><form action='https://htmlfile.example.net/steal'></form></body></html>"
    found = places(b.message(b.attachment("logo.svg", "image/svg+xml", svg),
                             b.attachment("invite.ics", "text/calendar", ics),
                             b.attachment("open.url", "application/octet-stream", shortcut),
                             b.attachment("statement.htm", "application/octet-stream", page)))
    assert found["https://svgfile.example.net/s"] == "attachment:html:a[xlink:href]"
    assert found["https://meet.example.net/j/123"] == "attachment:ics"
    assert found["https://icsurl.example.net/e"] == "attachment:ics"
    assert found["https://shortcut.example.net/run"] == "attachment:url-file"
    assert found["https://htmlfile.example.net/steal"] == "attachment:html:form[action]"


# QR codes.


def test_qr_codes_in_attached_inline_and_data_images():
    attached = b.attachment("scan.png", "image/png", b.qr_png("https://qrattach.example.net/a"))
    inline = b.attachment("logo.jpg", "image/jpeg", b.qr_jpeg("https://qrinline.example.net/i"),
                          inline_id="logo@x")
    data = base64.b64encode(b.qr_png("https://qrdata.example.net/d")).decode()
    html = b.text_part(f'<p><img src="cid:logo@x"><img src="data:image/png;base64,{data}"></p>',
                       "text/html")
    message = Message(b.message(html, inline, attached))
    found = {item.url: item for item in message.url_extraction.places}
    assert found["https://qrattach.example.net/a"].where == "qr:image"
    assert found["https://qrattach.example.net/a"].part == "scan.png"
    assert found["https://qrinline.example.net/i"].where == "qr:image"
    assert found["https://qrdata.example.net/d"].where == "qr:inline-data-image"


def test_a_qr_code_before_the_break_of_a_cut_jpeg_is_read():
    """A reader shows a JPEG cut short down to the cut; its QR code there counts."""
    from PIL import Image

    code = Image.open(io.BytesIO(b.qr_png("https://qrcut.example.net/c", scale=6))).convert("L")
    # Below the code, noise: most of the file's bytes, cut off at half of them.
    noise = random.Random(1).randbytes(code.width * code.height * 2)
    tall = Image.new("L", (code.width, code.height * 3), 255)
    tall.paste(code, (0, 0))
    tall.paste(Image.frombytes("L", (code.width, code.height * 2), noise), (0, code.height))
    out = io.BytesIO()
    tall.save(out, format="JPEG", quality=90)
    cut = out.getvalue()[:len(out.getvalue()) // 2]
    message = Message(b.message(b.text_part("see the scan"), b.attachment("scan.jpg",
                                                                          "image/jpeg", cut)))
    found = {item.url: item for item in message.url_extraction.places}
    assert found["https://qrcut.example.net/c"].where == "qr:image"


def test_image_bomb_is_skipped_not_decoded():
    from PIL import Image
    import io

    out = io.BytesIO()
    Image.new("L", (12000, 12000)).save(out, format="PNG")  # 144 Mpx of nothing, small file
    started = time.monotonic()
    assert places(b.message(b.attachment("bomb.png", "image/png", out.getvalue()))) == {}
    assert time.monotonic() - started < 5


# Bad input.


def test_ten_thousand_links_are_bounded_and_the_cut_recorded():
    links = "\r\n".join(f"https://host{i}.example.net/p" for i in range(10_000))
    started = time.monotonic()
    message = Message(b.message(b.text_part(links)))
    assert len(message.urls) == 1000
    assert "URLS_TRUNCATED" in message.defects
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("body", [
    "https://" + "a" * 100_000 + ".example.net/",
    "https://bad%zzescape.example.net/%%%",
    "https://xn--zz-.example/ and https://xn--/x and http://[::1/",
    "<a href='https://unterminated.example.net/" + "x" * 50_000,
    "<a href=\"" * 20_000,
    "\x00\xff" * 10_000,
    "x.co/" * 200_000,
    ("a" * 63 + ".") * 9 + "com/" + (" " + "b" * 63 + ".") * 20_000 + "org/",
])
def test_hostile_input_gets_an_answer_in_bounded_time(body):
    started = time.monotonic()
    for content_type in ("text/plain", "text/html"):
        message = Message(b.message(b.text_part(body, content_type)))
        assert isinstance(message.urls, list)
    assert time.monotonic() - started < 10


def test_url_limit_comes_from_the_configuration():
    message = Message(b.message(b.text_part(" ".join(f"https://h{i}.example.net/" for i in range(50)))))
    message.max_urls = 10
    assert len(message.urls) == 10 and message.url_extraction.truncated


def test_rewritten_links_are_unwrapped_for_judgement(tmp_path):
    from mailward.urls.signing import KeyRing, Signer

    keys = KeyRing(tmp_path / "keys.json")
    keys.load()
    ours = Signer(keys, "https://mx.example.com").link("https://inner.example.net/a?b=1&c=2",
                                                         "q1", "user@example.com")
    safelinks = ("https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2F"
                 "safe.example.net%2Fx&data=05")
    found = places(b.message(b.text_part(f"{ours} and {safelinks}")))
    assert found["https://inner.example.net/a?b=1&c=2"] == "text:unwrapped"
    assert found["https://safe.example.net/x"] == "text:unwrapped"


# The searches for links are written for speed; these are the plain forms
# they must agree with, match for match.
PLAIN_TEXT_URL = (r"(?i)(?:\bhttps?:(?://|\\\\)|(?<![\w@.-])www\d{0,3}\.)"
                  r"[^\s<>\"'`\x00-\x1f\x7f]{1,8192}")


def _same_matches(text: str) -> None:
    import re

    from mailward.urls.extract import _BARE_HOST, _TEXT_URL, bare_hosts

    def spans(matches):
        return [(m.span(), m.groups()) for m in matches]

    assert spans(_TEXT_URL.finditer(text)) == spans(re.finditer(PLAIN_TEXT_URL, text))
    assert spans(bare_hosts(text)) == spans(_BARE_HOST.finditer(text))


def test_fast_link_searches_agree_with_the_plain_ones_on_corpus_text(shared):
    from mailward.urls.normalize import strip_invisible

    folders = ["corpus/spam/ham", "corpus/spam/spam", "corpus/phishing"]
    count = 0
    for folder in folders:
        for path in sorted((shared / folder).iterdir())[:120]:
            message = Message(path.read_bytes())
            texts = [part.text for part in message.text_parts + message.html_parts]
            texts += [r.visible + r.hidden for r in message.rendered_html]
            for text in texts:
                _same_matches(strip_invisible(text))
                count += 1
    assert count > 300


def test_fast_link_searches_agree_with_the_plain_ones_on_made_up_text():
    import random

    rng = random.Random(11)
    labels = ["a", "b2", "x-y", "a" * 63, "b" * 62 + "c", "q" * 64, "-a", "a-", "\u212a",
              "\u017f", "\u0131", "www", "WWW1", "http", "HTTPS", "h"]
    ends = [".com", ".org/", ".c/", ".ab/x", "/", ".", ".zz/", "://", ":\\\\",
            "." + "y" * 25 + "/", ""]
    seps = ["", " ", "/", "@", ":", "x", "\n", "..", "-", "/p q", "<", "_", "\u00e9"]
    longest = ".".join(["a" * 63] * 8)
    for text in (longest + ".com/", " " + longest + ".com/x", longest + ".a.com/",
                 "x." + longest + ".com/", longest[1:] + ".org/ " + longest + ".org/"):
        _same_matches(text)
    for _ in range(20_000):
        text = "".join(rng.choice(seps) + ".".join(rng.choice(labels)
                                                   for _ in range(rng.randint(0, 9)))
                       + rng.choice(ends) + rng.choice(seps)
                       for _ in range(rng.randint(1, 6)))
        _same_matches(text)
