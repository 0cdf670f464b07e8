"""The mailbox adapter contract.

An adapter finds one delivered copy and moves it between folders (INBOX,
Junk, Quarantine). Retraction and restore, used alike by the post-delivery
response, user reports and the console, work through this contract only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

INBOX = "INBOX"
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
