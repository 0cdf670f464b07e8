"""Helpers for the web tests: a console client, test scores, test messages."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import httpx

from tests.support.gateway import SHARED, RunningGateway, crlf

PASSWORD = "correct horse battery staple"
PHISH_URL = "https://login.bad.example.net/verify"


def scores_file(path: Path, *, spam_quarantine: float | None = None,
                quarantine_external: bool = False) -> Path:
    """scores_file - the shipped scores with test thresholds; fails if they moved."""
    text = resources.files("mailward").joinpath("scores.toml").read_text(encoding="utf-8")
    if spam_quarantine is not None:
        assert "[categories.spam]\n" in text
        text = text.replace("[categories.spam]\n",
                            f"[categories.spam]\nquarantine = {spam_quarantine}\n", 1)
    if quarantine_external:
        text, count = re.subn(r"(?m)^EXTERNAL_SENDER = .*$",
                              'EXTERNAL_SENDER = { score = 0.0, action = "quarantine" }', text)
        assert count == 1
    path.write_text(text, encoding="utf-8")
    return path


def corpus_spam(index: int = 1) -> bytes:
    files = sorted((SHARED / "corpus/spam/spam").iterdir())
    return crlf(files[index].read_bytes())


def phish(subject: str = "verify your account", to: str = "alice@example.com") -> bytes:
    return (f"From: IT desk <it@phish.example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@phish.example.org>\r\n\r\n"
            f"Please verify at {PHISH_URL} today.\r\n").encode()


def queue_id(reply: str) -> str:
    return reply.rsplit(" ", 1)[-1]


class Console:
    """An HTTP client of the running console: a session (with CSRF) or a token."""

    def __init__(self, gateway: RunningGateway, token: str | None = None,
                 source: str | None = None) -> None:
        """source - a loopback address (127.0.0.2...) to connect from, as another client."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.HTTPTransport(local_address=source) if source else None
        self.http = httpx.Client(base_url=gateway.web_url, headers=headers, timeout=30,
                                 follow_redirects=False, transport=transport)
        self.csrf = ""

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        answer = self.http.post("/api/v1/auth/login",
                                json={"username": username, "password": password})
        if answer.status_code == 200:
            self.csrf = answer.json()["csrf_token"]
            self.http.headers["X-CSRF-Token"] = self.csrf
        return answer

    def login_via(self, username: str, password: str, forwarded_for: str) -> httpx.Response:
        """login_via - a login attempt that says it was forwarded for another client."""
        return self.http.post("/api/v1/auth/login",
                              json={"username": username, "password": password},
                              headers={"X-Forwarded-For": forwarded_for})

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.http.post(path, **kwargs)

    def patch(self, path: str, **kwargs) -> httpx.Response:
        return self.http.patch(path, **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return self.http.delete(path, **kwargs)

    def item_of(self, queue: str) -> dict:
        """item_of - the quarantine item of a queue id (any status)."""
        listing = self.get("/api/v1/quarantine", params={"status": "all", "limit": 500})
        assert listing.status_code == 200, listing.text
        [item] = [i for i in listing.json()["items"] if i["queue_id"] == queue]
        return item

    def close(self) -> None:
        self.http.close()


def api_user(gateway: RunningGateway, name: str, role: str, *addresses: str,
             digest: str = "off") -> None:
    """api_user - create a user through the REST API, as the admin."""
    admin = Console(gateway)
    assert admin.login("admin").status_code == 200
    made = admin.post("/api/v1/users", json={"username": name, "role": role,
                                             "password": PASSWORD, "digest": digest,
                                             "addresses": list(addresses)})
    assert made.status_code == 201, made.text
    admin.close()


def add_user(gateway: RunningGateway, name: str, role: str, *addresses: str,
             digest: str = "off") -> None:
    """add_user - create a user with ``mailward user add``."""
    args = ["user", "add", name, "--role", role, "--password-stdin", "--digest", digest]
    for address in addresses:
        args += ["--address", address]
    gateway.cli(*args, input=(PASSWORD + "\n").encode())
