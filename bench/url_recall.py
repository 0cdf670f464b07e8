"""Extraction recall on a generated set of hidden-link tricks.

Each trick hides one link (a fresh host each time) the way phishing mail
does; recall is the share of hidden links that extraction finds, in their
canonical form. Prints recall per trick and overall.

    .venv/bin/python bench/url_recall.py [--per-trick N]
"""

from __future__ import annotations

import argparse
import base64
import io
import random
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailward.message import Message  # noqa: E402
from tests.urls import builders as b  # noqa: E402


def _html(body: str) -> bytes:
    return b.message(b.text_part(body, "text/html"))


def _text(body: str, encoding: str = "8bit") -> bytes:
    return b.message(b.text_part(body, encoding=encoding))


def _entities(text: str) -> str:
    return "".join(f"&#{ord(c)};" if c in ":/." else c for c in text)


def _qp_split(url: str) -> bytes:
    middle = len(url) // 2
    body = f'<a href=3D"{url[:middle]}=\r\n{url[middle:]}">x</a>'
    return (b"From: a@example.org\r\nTo: u@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            + body.encode() + b"\r\n")


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


# trick name -> (message builder from host, the canonical URL extraction must find)
def tricks(host: str) -> dict[str, tuple[bytes, str]]:
    url = f"https://{host}/login"
    ip = random.randrange(1 << 24, 1 << 31)
    dotted = ".".join(str((ip >> s) & 255) for s in (24, 16, 8, 0))
    return {
        "text scheme": (_text(f"go to {url}."), url),
        "text www": (_text(f"go to www.{host}/login"), f"http://www.{host}/login"),
        "text no scheme": (_text(f"go to {host}/login now"), f"http://{host}/login"),
        "text angle wrapped": (_text(f"<{url[:12]}\r\n {url[12:]}>"), url),
        "text zero-width": (_text(f"{url[:10]}\u200b{url[10:]}"), url),
        "text trailing paren": (_text(f"(see {url})."), url),
        "text base64 part": (_text(f"go {url}", "base64"), url),
        "html href": (_html(f'<a href="{url}">x</a>'), url),
        "html entities": (_html(f'<a href="{_entities(url)}">x</a>'), url),
        "html qp soft break": (_qp_split(url), url),
        "html duplicated attribute": (_html(f'<a href="{url}" href="https://x.example/">x</a>'), url),
        "html slash separator": (_html(f'<a/href="{url}">x</a>'), url),
        "html base href": (_html(f'<base href="https://{host}/"><a href="login">x</a>'), url),
        "html scheme relative": (_html(f'<a href="//{host}/login">x</a>'), url),
        "html backslashes": (_html(f'<a href="https:\\\\{host}\\login">x</a>'), url),
        "html userinfo": (_html(f'<a href="https://paypal.com@{host}/login">x</a>'), url),
        "html percent dots": (_html(f'<a href="https://{host.replace(".", "%2E")}/login">x</a>'), url),
        "html decimal ip": (_html(f'<a href="http://{ip}/login">x</a>'), f"http://{dotted}/login"),
        "html hex ip": (_html(f'<a href="http://{hex(ip)}/login">x</a>'), f"http://{dotted}/login"),
        "html octal ip": (_html('<a href="http://' + ".".join(
            "0" + oct((ip >> s) & 255)[2:] for s in (24, 16, 8, 0)) + '/login">x</a>'),
            f"http://{dotted}/login"),
        "html area": (_html(f'<map><area href="{url}"></map>'), url),
        "html form action": (_html(f'<form action="{url}"></form>'), url),
        "html iframe": (_html(f'<iframe src="{url}"></iframe>'), url),
        "html srcset": (_html(f'<img srcset="{url} 2x">'), url),
        "html meta refresh": (_html(f'<meta http-equiv="refresh" content="0;url={url}">'), url),
        "html css url": (_html(f'<div style="background:url(\'{url}\')">x</div>'), url),
        "html hidden text": (_html(f'<p style="display:none">{url}</p>'), url),
        "html svg xlink": (_html(f'<svg><a xlink:href="{url}"><text>x</text></a></svg>'), url),
        "html unterminated tag": (_html(f'<p>hi</p><a href="{url}"'), url),
        "html data: image qr": (_html('<img src="data:image/png;base64,'
                                      + base64.b64encode(b.qr_png(url)).decode() + '">'), url),
        "attachment html": (b.message(b.attachment("a.html", "text/html",
                                                   f'<a href="{url}">x</a>'.encode())), url),
        "attachment svg": (b.message(b.attachment("a.svg", "image/svg+xml",
                                                  f'<svg><a href="{url}"/></svg>'.encode())), url),
        "attachment pdf annotation": (b.message(b.attachment("a.pdf", "application/pdf",
                                                             b.pdf(link=url))), url),
        "attachment pdf text": (b.message(b.attachment("a.pdf", "application/pdf",
                                                       b.pdf(text=f"go {url}"))), url),
        "attachment pdf qr": (b.message(b.attachment("a.pdf", "application/pdf",
                                                     b.pdf(qr=url))), url),
        "attachment docx relationship": (b.message(b.attachment(
            "a.docx", "application/octet-stream", b.docx("none", url, "none"))), url),
        "attachment docx in zip": (b.message(b.attachment("a.zip", "application/zip", _zip(
            "a.docx", b.docx("none", url, "none")))), url),
        "attachment ics folded": (b.message(b.attachment("a.ics", "text/calendar", (
            f"BEGIN:VCALENDAR\r\nDESCRIPTION:{url[:15]}\r\n {url[15:]}\r\nEND:VCALENDAR\r\n"
        ).encode())), url),
        "attachment .url": (b.message(b.attachment("a.url", "application/octet-stream",
                                                   f"[InternetShortcut]\r\nURL={url}\r\n".encode())),
                            url),
        "attachment html in zip": (b.message(b.attachment("a.zip", "application/zip", _zip(
            "a.htm", f'<a href="{url}">x</a>'.encode()))), url),
        "qr png attachment": (b.message(b.attachment("q.png", "image/png", b.qr_png(url))), url),
        "qr jpeg inline": (b.message(b.attachment("q.jpg", "image/jpeg", b.qr_jpeg(url),
                                                  inline_id="q@x")), url),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-trick", type=int, default=20)
    args = parser.parse_args()
    random.seed(20261203)
    found: dict[str, int] = {}
    total = 0
    started = time.perf_counter()
    for round_ in range(args.per_trick):
        host = f"h{random.randrange(10**8)}.example{round_ % 7}.net"
        for name, (raw, expected) in tricks(host).items():
            urls = {u.url for u in Message(raw).url_extraction.places}
            found[name] = found.get(name, 0) + (expected in urls)
            total += 1
    elapsed = time.perf_counter() - started
    width = max(map(len, found))
    for name, count in found.items():
        print(f"{name:<{width}}  {count / args.per_trick:6.1%}")
    hits = sum(found.values())
    print(f"\nrecall: {hits}/{total} = {hits / total:.1%} over {len(found)} tricks "
          f"({args.per_trick} each, {elapsed:.1f}s)")


if __name__ == "__main__":
    main()
