"""Moving delivered copies for report verdicts: one place, over the mailbox adapters.

Every move a report verdict causes goes through ``move_copy``: retract to
Quarantine, move to Junk, restore to INBOX. It finds the copy through the
adapter that delivered it (the copy may have been moved by its user since),
moves it, and records where it now is in the message index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailward.mailbox.base import CopyRef, MailboxError
from mailward.store.models import Copy

if TYPE_CHECKING:
    from mailward.gateway import Gateway

STATES = {"Quarantine": "retracted", "Junk": "junked", "INBOX": "delivered"}


@dataclass(frozen=True, slots=True)
class Moved:
    """What became of one copy: where it was, where it is, and how it went."""

    from_folder: str
    to_folder: str
    outcome: str  # "moved", "already", "gone", "unreachable"
    detail: str = ""


def adapter_for(gateway: "Gateway", mailbox: str):
    """adapter_for - the mailbox adapter that holds copies delivered through mailbox."""
    if mailbox == gateway.mailboxes.name:
        return gateway.mailboxes
    return gateway.services.extras.get("mailboxes", {}).get(mailbox)


async def move_copy(gateway: "Gateway", copy: Copy, folder: str) -> Moved:
    """move_copy - put one delivered copy into folder; the index row is updated."""
    # TODO: Copies delivered to a relay (Exchange, Dovecot behind LMTP) need the IMAP
    # or Graph adapter registered under their mailbox name; until it is, such copies are
    # reported as unreachable and stay where they are.
    adapter = adapter_for(gateway, copy.mailbox)
    if adapter is None:
        return Moved(copy.folder, copy.folder, "unreachable",
                     f"no mailbox adapter for copies delivered via {copy.mailbox}")
    ref = CopyRef(copy.recipient, copy.folder, copy.native_id, copy.message_id)
    try:
        found = await adapter.find(ref)
        if found is None:
            return Moved(copy.folder, copy.folder, "gone", "the copy is no longer there")
        if found.folder == folder:
            copy.folder, copy.state = folder, STATES.get(folder, copy.state)
            return Moved(found.folder, folder, "already")
        moved = await adapter.move(found, folder)
    except MailboxError as error:
        return Moved(copy.folder, copy.folder, "unreachable", str(error)[:500])
    copy.folder, copy.state = moved.folder, STATES.get(moved.folder, copy.state)
    copy.native_id = moved.native_id or copy.native_id
    return Moved(found.folder, moved.folder, "moved")
