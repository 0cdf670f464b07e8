"""Signed click links: the token in every rewritten URL, and the keys behind it.

A rewritten link is ``{click_base}/u/{token}?u={original URL}``. The token is
``1.{key id}.{queue id}.{recipient id}.{signature}``: the recipient id is an
HMAC of the queue id and the recipient's address (opaque: the address never
appears in clear, and the click service finds the recipient again among the
message's recipients), and the signature is HMAC-SHA256 over the version,
key id, queue id, recipient id and the original URL, cut to 128 bits. The
original stays readable in the ``u`` parameter, percent-encoded only where
a URL query requires it.

Keys live in a JSON file (``[urls] keys_file``) written with mode 0600. The
newest key signs; every key still in the file verifies, so rotating keys
never breaks links already delivered; retiring a key does.

SECURITY: the signature is what keeps the click service from being an open
redirect: only links this gateway signed redirect anywhere. Comparison is in
constant time; a token or URL of any size or content is an answer, never an
exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

log = logging.getLogger("mailward.urls")

VERSION = "1"
CLICK_PATH = "/u/"
MAX_TOKEN = 200
MAX_LINK = 64 * 1024
_SAFE = "!$'()*,/:;=?@~[]"  # characters a query value may carry unencoded (RFC 3986 3.4)
_TOKEN = re.compile(r"1\.([A-Za-z0-9]{1,16})\.([A-Za-z0-9]{1,40})\.([a-z2-7]{16})\."
                    r"([A-Za-z0-9_-]{22})")


class KeysError(Exception):
    """The keys file cannot be read or written; the message says why."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    id: str
    secret: bytes
    created: str


class KeyRing:
    """The signing keys, reloaded from their file when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _stat(self) -> tuple[float, int] | None:
        """_stat - the file's modification time and size, or None."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        return info.st_mtime, info.st_size

    def load(self, create: bool = True) -> None:
        """load - read the keys; with ``create``, make a first key if there is none."""
        with self._lock:
            if self._stat() is None:
                if not create:
                    raise KeysError(f"no keys file at {self.path}")
                self._write([_new_key("1")])
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                keys = [SigningKey(str(k["id"]), base64.b64decode(k["secret"]),
                                   str(k.get("created", ""))) for k in data["keys"]]
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise KeysError(f"keys file {self.path} is unreadable: {error}") from None
            if not keys or any(len(k.secret) < 16 for k in keys):
                raise KeysError(f"keys file {self.path} holds no usable key")
            self._keys = {k.id: k for k in keys}
            self._current = keys[-1]
            self._stamp = self._stat()
            self._checked = time.monotonic()

    def _fresh(self) -> None:
        """_fresh - reload at most once a second if the file changed (rotation)."""
        if self._current is None:
            self.load()
            return
        if time.monotonic() - self._checked < 1.0:
            return
        self._checked = time.monotonic()
        if self._stat() != self._stamp:
            self.load()

    @property
    def current(self) -> SigningKey:
        """current - the key that signs new links."""
        self._fresh()
        assert self._current is not None
        return self._current

    def get(self, key_id: str) -> SigningKey | None:
        """get - the key of an id, if it is still in the file."""
        self._fresh()
        return self._keys.get(key_id)

    def keys(self) -> list[SigningKey]:
        """keys - every key that verifies."""
        self._fresh()
        return list(self._keys.values())

    def rotate(self) -> SigningKey:
        """rotate - add a new signing key; the old ones keep verifying."""
        self.load()
        number = max((int(k) for k in self._keys if k.isdigit()), default=0) + 1
        key = _new_key(str(number))
        with self._lock:
            self._write(list(self._keys.values()) + [key])
        self.load()
        return key

    def retire(self, key_id: str) -> bool:
        """retire - drop a key: links it signed stop working. Never the last key."""
        self.load()
        if key_id not in self._keys or len(self._keys) == 1:
            return False
        with self._lock:
            self._write([k for k in self._keys.values() if k.id != key_id])
        self.load()
        return True

    def _write(self, keys: list[SigningKey]) -> None:
        """_write - replace the keys file atomically, mode 0600, fsynced."""
        data = {"keys": [{"id": k.id, "secret": base64.b64encode(k.secret).decode(),
                          "created": k.created} for k in keys]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def _new_key(key_id: str) -> SigningKey:
    """_new_key - a fresh 256-bit key."""
    return SigningKey(key_id, secrets.token_bytes(32), datetime.now(UTC).isoformat())


def _mac(key: SigningKey, message: str) -> bytes:
    """_mac - HMAC-SHA256 of a message with a key."""
    return hmac.new(key.secret, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def recipient_id(key: SigningKey, queue_id: str, recipient: str) -> str:
    """recipient_id - the opaque id of one recipient of one message."""
    digest = _mac(key, f"rid|{queue_id}|{recipient.strip().lower()}")[:10]
    return base64.b32encode(digest).decode().lower()


def _signature(key: SigningKey, queue_id: str, rid: str, url: str) -> str:
    """_signature - the link signature, 128 bits, base64url."""
    digest = _mac(key, f"{VERSION}|{key.id}|{queue_id}|{rid}|{url}")[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_url(url: str) -> str:
    """encode_url - the original URL as a query value, readable where it can be."""
    return quote(url, safe=_SAFE)


@dataclass(frozen=True, slots=True)
class ClickLink:
    """What a verified (or refused) click link says."""

    url: str
    key_id: str
    queue_id: str
    rid: str
    valid: bool
    problem: str = ""


class Signer:
    """Builds and verifies click links for one click base URL."""

    def __init__(self, keys: KeyRing, base: str) -> None:
        self.keys = keys
        self.base = base.rstrip("/")
        self.prefix = self.base + CLICK_PATH

    def link(self, url: str, queue_id: str, recipient: str) -> str:
        """link - the rewritten form of url for one recipient of one message."""
        key = self.keys.current
        rid = recipient_id(key, queue_id, recipient)
        token = f"{VERSION}.{key.id}.{queue_id}.{rid}.{_signature(key, queue_id, rid, url)}"
        return f"{self.prefix}{token}?u={encode_url(url)}"

    def is_ours(self, url: str) -> bool:
        """is_ours - the URL is already a click link of this gateway."""
        return url.startswith(self.prefix)

    def verify(self, token: str, url: str) -> ClickLink:
        """verify - check a token against the URL it came with."""
        match = _TOKEN.fullmatch(token[:MAX_TOKEN])
        if match is None or len(token) > MAX_TOKEN:
            return ClickLink(url, "", "", "", False, "malformed token")
        key_id, queue_id, rid, signature = match.groups()
        key = self.keys.get(key_id)
        if key is None:
            return ClickLink(url, key_id, queue_id, rid, False, f"unknown key {key_id}")
        if len(url) > MAX_LINK:
            return ClickLink(url[:200], key_id, queue_id, rid, False, "URL too long")
        expected = _signature(key, queue_id, rid, url)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return ClickLink(url, key_id, queue_id, rid, False, "bad signature")
        return ClickLink(url, key_id, queue_id, rid, True)

    def decode(self, link: str) -> ClickLink:
        """decode - verify a whole rewritten link as it appears in a message."""
        link = link.strip()
        position = link.find(CLICK_PATH)
        if position < 0:
            return ClickLink(link[:200], "", "", "", False, "not a mailward click link")
        token, _, query = link[position + len(CLICK_PATH):].partition("?")
        return self.verify(token, url_from_query(query))

    def recipient_of(self, click: ClickLink, recipients: list[str]) -> str | None:
        """recipient_of - which of the message's recipients the link was made for."""
        key = self.keys.get(click.key_id)
        if key is None:
            return None
        for recipient in recipients:
            if hmac.compare_digest(recipient_id(key, click.queue_id, recipient), click.rid):
                return recipient
        return None


def url_from_query(query: str) -> str:
    """url_from_query - the original URL: everything after ``u=``, percent-decoded.

    ``u`` is always the last parameter, so an unencoded ``&`` that a client
    left in the URL stays part of it.
    """
    if query.startswith("u="):
        value = query[2:]
    else:
        position = query.find("&u=")
        value = query[position + 3:] if position >= 0 else ""
    return unquote(value[:MAX_LINK * 3], errors="strict") if _decodable(value) else ""


def _decodable(value: str) -> bool:
    """_decodable - the percent-escapes decode as UTF-8."""
    try:
        unquote(value[:MAX_LINK * 3], errors="strict")
    except UnicodeDecodeError:
        return False
    return True
