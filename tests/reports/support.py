"""Helpers for the user-report tests: mailboxes on disk, test messages, waiting."""

from __future__ import annotations

import email
import re
import time
from email.message import EmailMessage
from email.policy import SMTP
from importlib import resources
from pathlib import Path
from typing import Callable

import httpx

from tests.support.gateway import SHARED, RunningGateway, crlf

CAMPAIGN_URL = "https://evil-helpdesk.test/login?session=4711"


def scores_file(path: Path, *, tag: float = 1000.0, quarantine: float = 2000.0,
                tag_external: bool = False) -> Path:
    """scores_file - the shipped scores with the given total thresholds."""
    text = resources.files("mailward").joinpath("scores.toml").read_text(encoding="utf-8")
    text, count = re.subn(r"(?m)^\[actions\]\ntag = [0-9.]+\nquarantine = [0-9.]+\n",
                          f"[actions]\ntag = {tag}\nquarantine = {quarantine}\n", text)
    assert count == 1, "the [actions] table of scores.toml moved"
    if tag_external:
        text, count = re.subn(r"(?m)^EXTERNAL_SENDER = .*$",
                              'EXTERNAL_SENDER = { score = 0.0, action = "tag" }', text)
        assert count == 1
    path.write_text(text, encoding="utf-8")
    return path


def campaign_message(subject: str = "Your mailbox is almost full",
                     url: str = CAMPAIGN_URL, to: str = "staff@example.com",
                     sender: str = "helpdesk@evil-helpdesk.test") -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = f"IT Helpdesk <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{abs(hash((subject, url)))}.campaign@evil-helpdesk.test>"
    message["Date"] = "Thu, 03 Dec 2026 09:00:00 +0000"
    message.set_content(f"Your mailbox has reached its limit. Sign in to keep receiving "
                        f"mail:\n{url}\n\nIT Helpdesk\n")
    message.add_alternative(f"<html><body><p>Your mailbox has reached its limit.</p>"
                            f'<p><a href="{url}">Sign in</a> to keep receiving mail.</p>'
                            f"</body></html>", subtype="html")
    return message.as_bytes()


def forward_as_attachment(original: bytes, reporter: str, to: str,
                          subject: str = "Fwd: suspicious") -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = reporter
    message["To"] = to
    message["Subject"] = subject
    message.set_content("This looks like phishing.\n")
    message.add_attachment(email.message_from_bytes(original, policy=SMTP))
    return message.as_bytes()


def corpus(kind: str, index: int) -> bytes:
    files = sorted((SHARED / "corpus/spam" / kind).iterdir())
    return crlf(files[index].read_bytes())


def folder_files(gateway: RunningGateway, recipient: str, folder: str) -> list[Path]:
    local, _, domain = recipient.partition("@")
    home = gateway.data_dir / "mailboxes" / domain / local
    directory = home if folder == "INBOX" else home / f".{folder}"
    return sorted(p for sub in ("new", "cur") for p in (directory / sub).glob("*")
                  if p.is_file())


def wait_until(condition: Callable[[], object], timeout: float = 30.0,
               what: str = "condition", log: Callable[[], str] | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    tail = log()[-6000:] if log else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def delivered(gateway: RunningGateway, recipients: list[str], folder: str = "INBOX",
              count: int = 1) -> dict[str, Path]:
    """delivered - wait until each recipient has count files in folder; the newest."""
    def ready():
        found = {r: folder_files(gateway, r, folder) for r in recipients}
        return found if all(len(v) >= count for v in found.values()) else None

    found = wait_until(ready, what=f"delivery to {recipients} in {folder}", log=gateway.log)
    return {r: max(files, key=lambda p: p.stat().st_mtime) for r, files in found.items()}


def api(gateway: RunningGateway, token: str) -> httpx.Client:
    return httpx.Client(base_url=gateway.web_url, timeout=30,
                        headers={"Authorization": f"Bearer {token}"})


def stats(gateway: RunningGateway) -> dict:
    import json

    return json.loads(gateway.cli("reports", "stats", "--json").stdout)


class LmtpBridge:
    """A downstream MTA for the tests: takes SMTP from the gateway, delivers by LMTP.

    This is the place Postfix holds in a site whose mail lives in Dovecot: the
    gateway relays to it, it hands each message to Dovecot's LMTP service.
    """

    def __init__(self, lmtp_port: int) -> None:
        from aiosmtpd.controller import Controller

        from tests.support.dnsserver import free_port

        self.lmtp_port = lmtp_port
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        import smtplib

        def deliver() -> dict:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as client:
                return client.sendmail(envelope.mail_from or "", envelope.rcpt_tos,
                                       envelope.original_content)

        try:
            refused = await asyncio.to_thread(deliver)
        except smtplib.SMTPException as error:
            return f"451 4.3.0 LMTP delivery failed: {error}"
        if refused:
            return f"550 5.1.1 refused by LMTP: {sorted(refused)}"
        return "250 2.0.0 Ok: delivered by LMTP"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "LmtpBridge":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
