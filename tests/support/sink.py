"""A real SMTP server (aiosmtpd) that keeps what it receives: the relay in tests.

``codes`` maps a recipient to the reply code it gets at RCPT (e.g. 450 or
550), so tests can make the downstream server defer or refuse.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.support.dnsserver import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SinkHandler:
    messages: list[Received] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        code = self.codes.get(address.lower())
        if code:
            return f"{code} {code // 100}.0.0 test refusal for {address}"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            sender = "" if envelope.mail_from in ("<>", None) else envelope.mail_from
            self.messages.append(Received(sender, list(envelope.rcpt_tos),
                                          envelope.original_content))
        return "250 2.0.0 Ok: stored"


class _LongLines(SMTP):
    # Like Postfix, the downstream server in tests accepts lines past 1000 octets.
    line_length_limit = 4 * 1024 * 1024


class _Controller(Controller):
    def factory(self):
        return _LongLines(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = SinkHandler()
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                      data_size_limit=64 * 1024 * 1024)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> "SmtpSink":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= count:
                return self.messages
            time.sleep(0.05)
        raise AssertionError(f"sink got {len(self.messages)} messages, expected {count}")
