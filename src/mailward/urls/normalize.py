"""URL normalisation: one canonical form for look-ups and the index.

Hostile senders hide a URL's real target in forms a browser still follows;
the canonical form lower-cases the scheme and host, turns an IDN host into
A-labels (punycode), drops default ports, fragments and zero-width
characters, and strips the punctuation a sentence leaves on a link.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MAX_URL_LENGTH = 8192
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_TRAILING = ".,;:!?'\")]}>"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_to_ascii(host: str) -> str | None:
    """host_to_ascii - a host as lower-case A-labels, or None if invalid."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def normalize_url(raw: str, default_scheme: str = "http") -> str | None:
    """normalize_url - the canonical http(s) URL, or None if it is not one."""
    text = raw.strip().translate(_INVISIBLE)[:MAX_URL_LENGTH]
    text = text.rstrip(_TRAILING) if not text.endswith("/") else text
    if text.startswith("//"):
        text = f"https:{text}"  # scheme-relative: mail clients resolve it to https
    elif re.match(r"(?i)www\.", text):
        text = f"{default_scheme}://{text}"
    try:
        parts = urlsplit(text.replace("\\", "/"))
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = host_to_ascii(parts.hostname)
    if host is None:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def url_host(url: str) -> str:
    """url_host - the host of a normalised URL."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
