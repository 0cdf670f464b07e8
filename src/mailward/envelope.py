"""What SMTP told us about one message, and queue ids.

The envelope is everything the sending server said outside the message:
peer address, HELO name, TLS, MAIL FROM and RCPT TO, and when it arrived.
Checks read it; nothing in it comes from the message headers.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

_ALPHABET = "0123456789bcdfghjklmnpqrstvwxz"


def new_queue_id(now: float | None = None) -> str:
    """new_queue_id - a unique, time-ordered id such as ``1kq3x9d2b7fh4c8m``.

    Ten characters of milliseconds then six random ones, from an alphabet
    without vowels so that an id never spells a word.
    """
    millis = int((time.time() if now is None else now) * 1000)
    head = []
    for _ in range(10):
        millis, digit = divmod(millis, len(_ALPHABET))
        head.append(_ALPHABET[digit])
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    return "".join(reversed(head)) + tail


@dataclass(slots=True)
class Envelope:
    """The SMTP envelope of one message."""

    queue_id: str
    mail_from: str = ""
    rcpt_to: list[str] = field(default_factory=list)
    peer_ip: str = ""
    peer_port: int = 0
    helo: str = ""
    peer_name: str = ""
    tls: str = ""
    client_cert_names: list[str] = field(default_factory=list)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    smtputf8: bool = False
    outbound: bool = False

    @property
    def mail_from_domain(self) -> str:
        return self.mail_from.rpartition("@")[2].lower() if "@" in self.mail_from else ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["received_at"] = self.received_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Envelope":
        values = dict(data)
        values["received_at"] = datetime.fromisoformat(values["received_at"])
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})
