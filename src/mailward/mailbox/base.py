"""The mailbox adapter contract.

An adapter finds one delivered copy and moves it between folders (INBOX,
Junk, Quarantine). Retraction and restore, used alike by the post-delivery
response, user reports and the console, work through this contract only.
An adapter that can also read a copy's bytes, remove it and put it back as
itself (``HoldingMailbox``) supports ``trap.retract_mode = "hold"``, where a
pulled copy leaves the mailbox and is kept in mailward's own quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

INBOX = "INBOX"
# The folder recorded for a copy held in mailward's quarantine: in no mailbox.
HELD = "mailward-quarantine"
JUNK = "Junk"
QUARANTINE = "Quarantine"
FOLDERS = (INBOX, JUNK, QUARANTINE)


class MailboxError(Exception):
    """The mailbox or the copy could not be reached; the caller may retry."""


class CopyGone(MailboxError):
    """The copy or its whole mailbox no longer exists; retrying will not help."""


@dataclass(frozen=True, slots=True)
class CopyRef:
    """Where one delivered copy lives."""

    recipient: str
    folder: str
    native_id: str
    message_id: str = ""
    # The gateway's queue id, carried in X-Mailward-Queue-Id: how adapters of
    # remote stores find a copy whose native id they were never told.
    queue_id: str = ""


class Mailbox(Protocol):
    """Finds and moves delivered copies in one kind of mail store."""

    name: str

    async def find(self, ref: CopyRef) -> CopyRef | None:
        """Where the copy is now (it may have been moved by the user), or None."""

    async def move(self, ref: CopyRef, folder: str) -> CopyRef:
        """Move the copy into folder; the returned ref is where it is now."""

    async def is_read(self, ref: CopyRef) -> bool:
        """Whether the recipient has opened the copy."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """One copy as the mailbox holds it: bytes, IMAP-style flags, arrival time."""

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: float = 0.0


class HoldingMailbox(Mailbox, Protocol):
    """A mailbox from which a copy can be taken out entirely and put back."""

    async def fetch(self, ref: CopyRef) -> Fetched:
        """The copy's bytes and flags, wherever it is now; CopyGone if nowhere."""

    async def remove(self, ref: CopyRef) -> None:
        """Remove every instance of the copy from the mailbox (none is no error)."""

    async def put(self, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        """Put the copy back into folder as itself, unless it is already there."""


def can_hold(adapter: object) -> bool:
    """can_hold - whether an adapter supports taking copies out and back."""
    return all(callable(getattr(adapter, name, None)) for name in ("fetch", "remove", "put"))
