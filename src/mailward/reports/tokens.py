"""Signed report tokens: the reporter's token and the banner's per-copy link.

Two kinds of token, both HMAC-SHA256 with the site key (``web.secret_file``):

- A reporter token authenticates ``POST /api/v1/reports`` for one address
  (the add-in and the browser extension carry it): ``mwr1.<address in
  base64url>.<expiry>.<signature>``. It is issued by ``mailward reports
  token ADDRESS`` and names who reports; it grants nothing else.
- A banner link names one delivered copy: ``/report/<queue id>.<recipient
  id>.<signature>``. The recipient id is an HMAC of the queue id and the
  address, so the address never appears in the link; the page finds the
  recipient again among the message's recipients.

SECURITY: comparison is in constant time, and a token of any size or
content is an answer (None), never an exception. A forged or expired token
identifies nobody, so nothing is recorded or acted on for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

REPORTER_PREFIX = "mwr1."
MAX_TOKEN = 600
_LINK = re.compile(r"([A-Za-z0-9]{1,40})\.([a-z2-7]{16})\.([A-Za-z0-9_-]{22})")


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def reporter_token(key: bytes, address: str, lifetime: float | None = None,
                   now: float | None = None) -> str:
    """reporter_token - a token that lets its holder report as address."""
    address = address.strip().lower()
    expiry = 0 if lifetime is None else int((now or time.time()) + lifetime)
    body = f"{_b64(address.encode())}.{expiry}"
    return f"{REPORTER_PREFIX}{body}.{_b64(_mac(key, 'reporter|' + body)[:18])}"


def verify_reporter(key: bytes, token: str, now: float | None = None) -> str | None:
    """verify_reporter - the address a reporter token was issued for, or None."""
    if not token.startswith(REPORTER_PREFIX) or len(token) > MAX_TOKEN:
        return None
    parts = token[len(REPORTER_PREFIX):].split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    body = f"{parts[0]}.{parts[1]}"
    expected = _b64(_mac(key, "reporter|" + body)[:18])
    if not hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "replace")):
        return None
    expiry = int(parts[1])
    if expiry and expiry < (now or time.time()):
        return None
    try:
        address = _unb64(parts[0]).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return address if "@" in address else None


def recipient_id(key: bytes, queue_id: str, recipient: str) -> str:
    digest = _mac(key, f"report-rid|{queue_id}|{recipient.strip().lower()}")[:10]
    return base64.b32encode(digest).decode("ascii").lower()


def _link_signature(key: bytes, queue_id: str, rid: str) -> str:
    return _b64(_mac(key, f"report-link|{queue_id}|{rid}")[:16])


def link_token(key: bytes, queue_id: str, recipient: str) -> str:
    """link_token - the token of the banner's report link for one copy."""
    rid = recipient_id(key, queue_id, recipient)
    return f"{queue_id}.{rid}.{_link_signature(key, queue_id, rid)}"


@dataclass(frozen=True, slots=True)
class LinkClaim:
    queue_id: str
    rid: str


def verify_link(key: bytes, token: str) -> LinkClaim | None:
    """verify_link - the copy a report link names, or None if it is not ours."""
    match = _LINK.fullmatch(token[:MAX_TOKEN])
    if match is None or len(token) > MAX_TOKEN:
        return None
    queue_id, rid, signature = match.groups()
    expected = _link_signature(key, queue_id, rid)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    return LinkClaim(queue_id, rid)


def recipient_of(key: bytes, claim: LinkClaim, recipients: list[str]) -> str | None:
    """recipient_of - which of the message's recipients the link was made for."""
    for recipient in recipients:
        if hmac.compare_digest(recipient_id(key, claim.queue_id, recipient), claim.rid):
            return recipient.lower()
    return None
