"""The built-in mailbox store: one Maildir++ per recipient.

    mailboxes/DOMAIN/LOCALPART/{cur,new,tmp}          INBOX
    mailboxes/DOMAIN/LOCALPART/.Junk/{cur,new,tmp}    Junk
    mailboxes/DOMAIN/LOCALPART/.Quarantine/...        Quarantine

This is the layout Dovecot reads, so a site can serve the store over IMAP.
A copy's native id is its file name up to the ``:2,`` flags, and is fixed
by the queue id and the recipient, so a delivery repeated after a crash
finds the copy already there instead of writing it twice.

SECURITY: recipient addresses become directory names; anything that could
leave the store's root (separators, dot names, control characters) is
refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from pathlib import Path

from mailward.mailbox.base import FOLDERS, INBOX, CopyGone, CopyRef, Fetched, MailboxError
from mailward.smtp.spool import fsync_dir

_SAFE = re.compile(r"[^a-z0-9._+=-]")
# Maildir info letters and the IMAP flags they stand for.
_LETTERS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen",
            "T": "\\Deleted"}


def _safe_part(text: str) -> str:
    text = _SAFE.sub(lambda m: f"%{ord(m.group(0)):02x}", text.lower())
    if not text or text.strip(".") == "":
        raise MailboxError(f"unusable mailbox name {text!r}")
    return text


class MaildirStore:
    """Deliver into, find in and move between the folders of local Maildirs."""

    name = "maildir"

    def __init__(self, root: Path) -> None:
        self.root = root

    def home(self, recipient: str) -> Path:
        local, at, domain = recipient.rpartition("@")
        if not at:
            raise MailboxError(f"{recipient!r} is not an address")
        return self.root / _safe_part(domain) / _safe_part(local)

    def folder_dir(self, recipient: str, folder: str) -> Path:
        if folder not in FOLDERS:
            raise MailboxError(f"unknown folder {folder!r} (one of {', '.join(FOLDERS)})")
        home = self.home(recipient)
        return home if folder == INBOX else home / f".{folder}"

    def _ensure(self, directory: Path) -> None:
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    def ensure_mailbox(self, recipient: str) -> None:
        for folder in FOLDERS:
            self._ensure(self.folder_dir(recipient, folder))

    @staticmethod
    def native_id(queue_id: str, recipient: str, received: float) -> str:
        """native_id - the unique Maildir base name of one copy (time.queueid_rcpt)."""
        tag = hashlib.sha256(recipient.lower().encode()).hexdigest()[:10]
        return f"{int(received)}.{queue_id}_{tag}"

    def _locate(self, recipient: str, native_id: str, folder: str | None) -> tuple[str, Path] | None:
        folders = [folder] if folder in FOLDERS else []
        folders += [f for f in FOLDERS if f != folder]
        for name in folders:
            directory = self.folder_dir(recipient, name)
            for sub in ("new", "cur"):
                base = directory / sub
                if not base.is_dir():
                    continue
                exact = base / native_id
                if exact.exists():
                    return name, exact
                for candidate in base.glob(f"{glob_escape(native_id)}:2,*"):
                    return name, candidate
        return None

    def deliver_sync(self, recipient: str, data: bytes, folder: str, queue_id: str,
                     received: float) -> str:
        """deliver_sync - write one copy durably; the native id."""
        native = self.native_id(queue_id, recipient, received)
        self.ensure_mailbox(recipient)
        if self._locate(recipient, native, folder) is not None:
            return native
        directory = self.folder_dir(recipient, folder)
        name = native
        temporary = directory / "tmp" / name
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # The arrival time, as Dovecot reads it (INTERNALDATE is the mtime).
        os.utime(temporary, (received, received))
        os.replace(temporary, directory / "new" / name)
        fsync_dir(directory / "new")
        return native

    async def deliver(self, recipient: str, data: bytes, folder: str, queue_id: str,
                      received: float | None = None) -> str:
        return await asyncio.to_thread(self.deliver_sync, recipient, data, folder, queue_id,
                                       time.time() if received is None else received)

    def _find_sync(self, ref: CopyRef) -> CopyRef | None:
        found = self._locate(ref.recipient, ref.native_id, ref.folder)
        if found is None:
            return None
        return CopyRef(ref.recipient, found[0], ref.native_id, ref.message_id, ref.queue_id)

    async def find(self, ref: CopyRef) -> CopyRef | None:
        return await asyncio.to_thread(self._find_sync, ref)

    def _move_sync(self, ref: CopyRef, folder: str) -> CopyRef:
        found = self._locate(ref.recipient, ref.native_id, ref.folder)
        if found is None:
            raise CopyGone(f"copy {ref.native_id} of {ref.recipient} is gone")
        current, path = found
        if current == folder:
            return CopyRef(ref.recipient, folder, ref.native_id, ref.message_id, ref.queue_id)
        target_dir = self.folder_dir(ref.recipient, folder)
        self._ensure(target_dir)
        sub = path.parent.name
        target = target_dir / sub / path.name
        os.replace(path, target)
        fsync_dir(target.parent)
        fsync_dir(path.parent)
        return CopyRef(ref.recipient, folder, ref.native_id, ref.message_id, ref.queue_id)

    async def move(self, ref: CopyRef, folder: str) -> CopyRef:
        return await asyncio.to_thread(self._move_sync, ref, folder)

    def _read_sync(self, ref: CopyRef) -> bool:
        found = self._locate(ref.recipient, ref.native_id, ref.folder)
        if found is None:
            raise CopyGone(f"copy {ref.native_id} of {ref.recipient} is gone")
        name = found[1].name
        return ":2," in name and "S" in name.split(":2,", 1)[1]

    async def is_read(self, ref: CopyRef) -> bool:
        return await asyncio.to_thread(self._read_sync, ref)

    # Taking a copy out and putting it back (trap.retract_mode = "hold").

    def _fetch_sync(self, ref: CopyRef) -> Fetched:
        found = self._locate(ref.recipient, ref.native_id, ref.folder)
        if found is None:
            raise CopyGone(f"copy {ref.native_id} of {ref.recipient} is gone")
        path = found[1]
        info = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
        flags = tuple(_LETTERS[letter] for letter in sorted(set(info)) if letter in _LETTERS)
        return Fetched(path.read_bytes(), flags, path.stat().st_mtime)

    async def fetch(self, ref: CopyRef) -> Fetched:
        return await asyncio.to_thread(self._fetch_sync, ref)

    def _remove_sync(self, ref: CopyRef) -> None:
        while (found := self._locate(ref.recipient, ref.native_id, ref.folder)) is not None:
            found[1].unlink(missing_ok=True)
            fsync_dir(found[1].parent)

    async def remove(self, ref: CopyRef) -> None:
        await asyncio.to_thread(self._remove_sync, ref)

    def _put_sync(self, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        """_put_sync - the same file name and flags as before, written durably."""
        found = self._locate(ref.recipient, ref.native_id, folder)
        if found is not None:
            return CopyRef(ref.recipient, found[0], ref.native_id, ref.message_id,
                           ref.queue_id)
        directory = self.folder_dir(ref.recipient, folder)
        self._ensure(directory)
        letters = "".join(sorted(k for k, v in _LETTERS.items() if v in copy.flags))
        # A copy nobody had looked at goes back to new/, as it came.
        sub, name = ("cur", f"{ref.native_id}:2,{letters}") if copy.flags \
            else ("new", ref.native_id)
        temporary = directory / "tmp" / ref.native_id
        with open(temporary, "wb") as handle:
            handle.write(copy.data)
            handle.flush()
            os.fsync(handle.fileno())
        if copy.internal_date:
            os.utime(temporary, (copy.internal_date, copy.internal_date))
        os.replace(temporary, directory / sub / name)
        fsync_dir(directory / sub)
        return CopyRef(ref.recipient, folder, ref.native_id, ref.message_id, ref.queue_id)

    async def put(self, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        return await asyncio.to_thread(self._put_sync, ref, folder, copy)

    def path_of(self, ref: CopyRef) -> Path | None:
        found = self._locate(ref.recipient, ref.native_id, ref.folder)
        return found[1] if found else None

    def list_folder(self, recipient: str, folder: str) -> list[Path]:
        directory = self.folder_dir(recipient, folder)
        return sorted(p for sub in ("new", "cur") for p in (directory / sub).glob("*")
                      if p.is_file())


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
