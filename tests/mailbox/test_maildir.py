"""The built-in Maildir store: durable delivery, find, move, read flags."""

from __future__ import annotations

import pytest

from mailward.mailbox.base import CopyRef, MailboxError
from mailward.mailbox.maildir import MaildirStore


async def test_deliver_find_move_and_back(tmp_path):
    store = MaildirStore(tmp_path)
    native = await store.deliver("Bob@Example.com", b"Subject: x\r\n\r\nhi\r\n", "INBOX", "q1", 1000)
    assert (tmp_path / "example.com/bob/new" / native).read_bytes().endswith(b"hi\r\n")
    ref = CopyRef("bob@example.com", "INBOX", native)
    assert (await store.find(ref)).folder == "INBOX"
    assert not await store.is_read(ref)
    moved = await store.move(ref, "Quarantine")
    assert moved.folder == "Quarantine"
    assert (tmp_path / "example.com/bob/.Quarantine/new" / native).exists()
    # Found even when asked in the wrong folder (the user may have moved it).
    assert (await store.find(ref)).folder == "Quarantine"
    back = await store.move(moved, "INBOX")
    assert back.folder == "INBOX"


async def test_a_repeated_delivery_is_not_written_twice(tmp_path):
    store = MaildirStore(tmp_path)
    first = await store.deliver("a@example.com", b"x", "INBOX", "q2", 1000)
    second = await store.deliver("a@example.com", b"x", "INBOX", "q2", 1000)
    assert first == second
    assert len(store.list_folder("a@example.com", "INBOX")) == 1


async def test_read_flag_and_move_keep_flags(tmp_path):
    store = MaildirStore(tmp_path)
    native = await store.deliver("a@example.com", b"x", "INBOX", "q3", 1000)
    home = tmp_path / "example.com/a"
    (home / "new" / native).rename(home / "cur" / f"{native}:2,S")
    ref = CopyRef("a@example.com", "INBOX", native)
    assert await store.is_read(ref)
    await store.move(ref, "Junk")
    assert (home / ".Junk/cur" / f"{native}:2,S").exists()


@pytest.mark.parametrize("address", ["../../etc@example.com", "a@..", "noat", "a@b/c"])
async def test_hostile_addresses_cannot_leave_the_store(tmp_path, address):
    store = MaildirStore(tmp_path / "root")
    try:
        await store.deliver(address, b"x", "INBOX", "q4", 1000)
    except MailboxError:
        return
    for path in (tmp_path).rglob("*"):
        assert str(path).startswith(str(tmp_path / "root"))


async def test_missing_copy_and_unknown_folder(tmp_path):
    store = MaildirStore(tmp_path)
    with pytest.raises(MailboxError):
        await store.move(CopyRef("a@example.com", "INBOX", "nope"), "Junk")
    with pytest.raises(MailboxError):
        store.folder_dir("a@example.com", "Trash")
