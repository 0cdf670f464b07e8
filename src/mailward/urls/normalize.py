"""URL normalisation: one canonical form for look-ups and the index.

Hostile senders hide a URL's real target in forms a browser still follows:
backslashes for slashes, ``user@host`` prefixes, percent-encoded dots in the
host, hosts written as one decimal, octal or hex number, IDN homoglyphs,
zero-width characters. The standard library's ``urllib`` parses none of
these as a browser does, so parsing here follows the WHATWG URL Standard
(the ``ada-url`` library, the parser Node.js uses): what this module says a
URL points at is what a browser would open.

The canonical form is the WHATWG serialisation without the fragment and
without userinfo: lower-case scheme, A-label (punycode) host, dotted-quad
IPv4, no default port, dot segments resolved.

SECURITY: input is hostile and unbounded; it is cut at ``MAX_URL_LENGTH``
before parsing, and a parse failure is an answer (None), never an exception.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from ada_url import URL, HostType

MAX_URL_LENGTH = 8192
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"
                                    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                                    "\u2066\u2067\u2068\u2069"), None)
_ANY_INVISIBLE = re.compile("[" + "".join(map(chr, _INVISIBLE)) + "]")
_TRAILING = ".,;:!?'\"*"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_WWW = re.compile(r"(?i)www\d{0,3}\.")
_SCHEME = re.compile(r"(?i)^[a-z][a-z0-9+.-]*:")
WEB_SCHEMES = ("http", "https")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A URL as a browser would open it, with what was odd about how it was written."""

    url: str          # canonical form (no fragment, no userinfo)
    href: str         # the full WHATWG serialisation, fragment and userinfo kept
    scheme: str
    host: str         # A-labels, or the dotted / bracketed IP
    userinfo: str     # the part before '@' in the authority, if any
    ip_host: bool     # the host is an IP literal (in whatever notation)
    ip_obfuscated: bool  # the IP was written other than as a dotted quad

    @property
    def punycode(self) -> bool:
        """punycode - some label of the host is an A-label."""
        return any(label.startswith("xn--") for label in self.host.split("."))


def strip_invisible(text: str) -> str:
    """strip_invisible - drop zero-width and bidi control characters."""
    return text.translate(_INVISIBLE) if _ANY_INVISIBLE.search(text) else text


def trim_trailing(text: str) -> str:
    """trim_trailing - drop punctuation a sentence leaves after a link.

    A closing bracket is kept when the link itself opened it, as in
    ``https://en.example.org/wiki/Foo_(bar)``.
    """
    while text:
        last = text[-1]
        if last in _TRAILING:
            text = text[:-1]
        elif last in _CLOSERS and text.count(_CLOSERS[last]) < text.count(last):
            text = text[:-1]
        else:
            break
    return text


def host_to_ascii(host: str) -> str | None:
    """host_to_ascii - a host as a browser resolves it (A-labels), or None."""
    host = strip_invisible(host.strip()).rstrip(".")
    if not host:
        return None
    try:
        parsed = URL(f"http://{host}/")
    except ValueError:
        return None
    return parsed.hostname.rstrip(".") or None


def _ip_obfuscated(written: str, host_type: HostType) -> bool:
    """_ip_obfuscated - an IPv4 host that is not a plain dotted quad."""
    if host_type != HostType.IPV4:
        return False
    try:
        return str(ipaddress.IPv4Address(written)) != written
    except ValueError:
        return True


def _written_host(text: str) -> str:
    """_written_host - the host as written in the authority (for the IP notation)."""
    rest = text.split(":", 1)[1].lstrip("/\\") if ":" in text else text
    authority = re.split(r"[/\\?#]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@lru_cache(maxsize=65536)
def parse_url(raw: str, default_scheme: str = "http") -> ParsedUrl | None:
    """parse_url - a web URL as a browser parses it (WHATWG URL), or None.

    Scheme-relative references (``//host/path``) are taken as https, as mail
    clients open them; a bare ``www.`` host gets ``default_scheme``.
    """
    text = strip_invisible(raw.strip())[:MAX_URL_LENGTH]
    if text.startswith(("//", "\\\\")):
        text = f"https:{text}"
    elif _WWW.match(text) and not _SCHEME.match(text):
        text = f"{default_scheme}://{text}"
    try:
        parsed = URL(text)
    except ValueError:
        return None
    scheme = parsed.protocol.rstrip(":")
    if scheme not in WEB_SCHEMES or not parsed.hostname:
        return None
    userinfo = parsed.username + (f":{parsed.password}" if parsed.password else "")
    host_type = parsed.host_type
    host = parsed.hostname.rstrip(".") or parsed.hostname
    port = f":{parsed.port}" if parsed.port else ""
    canonical = f"{scheme}://{host}{port}{parsed.pathname or '/'}{parsed.search}"
    return ParsedUrl(url=canonical, href=parsed.href, scheme=scheme, host=host,
                     userinfo=userinfo, ip_host=host_type != HostType.DEFAULT,
                     ip_obfuscated=_ip_obfuscated(_written_host(text), host_type))


def normalize_url(raw: str, default_scheme: str = "http") -> str | None:
    """normalize_url - the canonical http(s) URL, or None if it is not one."""
    parsed = parse_url(raw, default_scheme)
    return parsed.url if parsed else None


def url_host(url: str) -> str:
    """url_host - the host of a URL (A-labels), or '' if it has none."""
    parsed = parse_url(url)
    return parsed.host if parsed else ""


def scheme_of(raw: str) -> str:
    """scheme_of - the lower-case scheme a browser would read, or ''."""
    text = strip_invisible(raw).strip().lstrip("\x00\x01\x02\x03\x04\x05\x06\x07\x08")
    text = re.sub(r"[\t\r\n]", "", text[:64])
    match = _SCHEME.match(text)
    return match.group(0)[:-1].lower() if match else ""
