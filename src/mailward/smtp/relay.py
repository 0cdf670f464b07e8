"""Handing a message to the downstream server over SMTP (aiosmtplib).

One transaction per batch of recipients, with each recipient's reply kept,
so that one refused recipient does not fail the others. URLs name the
server: ``smtp://host:port`` (plain, STARTTLS used when offered),
``smtp+starttls://`` (STARTTLS required) or ``smtps://`` (TLS from the
start).
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiosmtplib


@dataclass(frozen=True, slots=True)
class RelayTarget:
    host: str
    port: int
    tls: str  # "", "starttls" (required), "opportunistic", "implicit"

    @classmethod
    def parse(cls, url: str) -> "RelayTarget":
        parts = urlsplit(url)
        schemes = {"smtp": ("opportunistic", 25), "smtp+starttls": ("starttls", 587),
                   "smtps": ("implicit", 465)}
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"{url!r} is not smtp://host:port, smtp+starttls:// or smtps://")
        tls, port = schemes[parts.scheme]
        return cls(parts.hostname, parts.port or port, tls)


@dataclass(frozen=True, slots=True)
class RecipientResult:
    code: int
    message: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500


@functools.cache
def _context() -> ssl.SSLContext:
    """_context - one client TLS context (building one per connection is costly)."""
    # The downstream server is usually internal with a private certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def relay(target: RelayTarget, mail_from: str, recipients: list[str], data: bytes,
                *, helo: str, timeout: float) -> dict[str, RecipientResult]:
    """relay - send one message; each recipient's result (4xx on connection errors)."""
    results: dict[str, RecipientResult] = {}
    client = aiosmtplib.SMTP(hostname=target.host, port=target.port, timeout=timeout,
                             local_hostname=helo, use_tls=target.tls == "implicit",
                             start_tls=False, tls_context=_context())
    try:
        await client.connect()
        await client.ehlo()
        if target.tls == "starttls" or (target.tls == "opportunistic"
                                        and client.supports_extension("starttls")):
            await client.starttls(tls_context=_context())
            await client.ehlo()
        options = []
        if any(byte > 127 for byte in data[:1_000_000]) and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (mail_from + "".join(recipients)).isascii() and client.supports_extension("smtputf8"):
            options.append("SMTPUTF8")
        await client.mail(mail_from, options=options)
        accepted = []
        for recipient in recipients:
            try:
                reply = await client.rcpt(recipient)
                accepted.append(recipient)
                results[recipient] = RecipientResult(reply.code, reply.message)
            except aiosmtplib.SMTPRecipientRefused as refused:
                results[recipient] = RecipientResult(refused.code, refused.message)
        if accepted:
            reply = await client.data(data)
            for recipient in accepted:
                results[recipient] = RecipientResult(reply.code, reply.message)
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass  # the message is already accepted; a failed QUIT changes nothing
    except aiosmtplib.SMTPResponseException as error:
        for recipient in recipients:
            results.setdefault(recipient, RecipientResult(error.code, error.message))
            if results[recipient].ok:
                results[recipient] = RecipientResult(error.code, error.message)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        for recipient in recipients:
            if recipient not in results or results[recipient].ok:
                results[recipient] = RecipientResult(451, f"relay unreachable: {error}")
    finally:
        client.close()
    return results
