"""Secrets, signatures and the escaping of hostile text shown to people.

SECURITY: everything a message carries (headers, file names, body text) is
written by the sender. Jinja2 escapes HTML; ``visible`` goes further and
replaces bidirectional overrides and control characters with a visible
``<U+202E>`` marker, so that a name such as ``invoice\u202efdp.exe`` cannot
pose as a PDF on a page (an escaped RTLO still reverses the text after it).
The signing key lives in one file with mode 0600, created on first use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from mailward.config import Settings

log = logging.getLogger("mailward.web")

# Bidi embeddings, overrides and isolates, other format controls, C0/C1 controls
# except tab and newline.
_UNSAFE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c"
                     "\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u2028\u2029]")
_KEY_BYTES = 32


def visible(value: object, limit: int | None = None) -> str:
    """visible - text with every invisible or direction-changing character shown."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "\u2026"
    return _UNSAFE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def has_unsafe(value: str) -> bool:
    return _UNSAFE.search(value) is not None


def secret_path(settings: "Settings") -> Path:
    return Path(settings.web.secret_file) if settings.web.secret_file \
        else settings.data_dir / "web.key"


def load_secret(settings: "Settings") -> bytes:
    """load_secret - the signing key, created with mode 0600 when missing."""
    path = secret_path(settings)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(_KEY_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_secret(settings)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        log.info("created the web signing key %s", path)
        return key
    if len(data) < _KEY_BYTES:
        raise ValueError(f"web.secret_file: {path} holds fewer than {_KEY_BYTES} bytes")
    return data


def sign(key: bytes, message: str) -> str:
    """sign - an HMAC-SHA256 of message, URL-safe base64 without padding."""
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def signature_ok(key: bytes, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, message), signature)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def client_ip(request: Request) -> str:
    """client_ip - the peer address (proxies' headers are not trusted)."""
    return request.client.host if request.client else ""


def is_loopback_http(request: Request) -> bool:
    host = (request.url.hostname or "").strip("[]")
    return request.url.scheme == "http" and (host in ("localhost", "::1")
                                             or host.startswith("127."))


CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'")


def security_headers() -> dict[str, str]:
    """security_headers - what every console response carries."""
    return {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
