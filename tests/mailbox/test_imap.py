"""The IMAP adapter against a real Dovecot on loopback."""

from __future__ import annotations

import smtplib

import pytest

from mailward.mailbox.base import CopyGone, CopyRef
from mailward.mailbox.imap import ImapConfig, ImapMailbox
from tests.conftest import need
from tests.support import dovecot as dc

USERS = ["bob@example.com", "eve@example.com"]


@pytest.fixture(scope="module")
def server():
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    instance = dc.Dovecot(USERS).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def server_without_move():
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    instance = dc.Dovecot(USERS, capabilities="IMAP4rev1 UIDPLUS").start()
    yield instance
    instance.stop()


def adapter(server, **options) -> ImapMailbox:
    return ImapMailbox(ImapConfig(host="127.0.0.1", port=server.imap_port, security="none",
                                  admin_user=dc.MASTER_USER,
                                  admin_password=dc.MASTER_PASSWORD, **options), **{})


def deliver(server, recipient: str, queue_id: str) -> None:
    data = (f"From: a@sender.example\r\nTo: {recipient}\r\nSubject: {queue_id}\r\n"
            f"Message-ID: <{queue_id}@sender.example>\r\n"
            f"X-Mailward-Queue-Id: {queue_id}\r\n\r\nbody\r\n").encode()
    with smtplib.LMTP("127.0.0.1", server.lmtp_port) as client:
        client.sendmail("a@sender.example", [recipient], data)


def count(server, user: str, folder: str) -> int:
    base = server.maildir(user) / ("" if folder == "INBOX" else f".{folder}")
    return sum(1 for sub in ("new", "cur") if (base / sub).is_dir()
               for _ in (base / sub).iterdir())


@pytest.mark.parametrize("which", ["server", "server_without_move"])
async def test_find_move_and_restore_keep_the_copy_itself(request, which):
    server = request.getfixturevalue(which)
    box = adapter(server)
    queue_id = f"QMOVE{which[-4:]}"
    deliver(server, "bob@example.com", queue_id)
    ref = await box.find(CopyRef("bob@example.com", "INBOX", "", queue_id=queue_id))
    assert ref is not None and ref.folder == "INBOX"
    assert not await box.is_read(ref)
    moved = await box.move(ref, "Quarantine")
    assert moved.folder == "Quarantine"
    assert (await box.find(ref)).folder == "Quarantine"
    # Asked again (a retry after a lost answer): nothing moves twice.
    again = await box.move(ref, "Quarantine")
    assert again == moved
    back = await box.move(moved, "INBOX")
    assert back.folder == "INBOX"
    assert count(server, "bob@example.com", "Quarantine") == 0
    box.close()


async def test_read_flag_survives_the_move(server):
    box = adapter(server)
    deliver(server, "eve@example.com", "QREAD1")
    ref = await box.find(CopyRef("eve@example.com", "INBOX", "", queue_id="QREAD1"))
    box._run(ref.recipient, lambda c: (c.select_folder("INBOX"),
                                       c.add_flags(c.search(["HEADER", "X-Mailward-Queue-Id",
                                                             "QREAD1"]), [b"\\Seen"])))
    assert await box.is_read(ref)
    moved = await box.move(ref, "Quarantine")
    assert await box.is_read(moved)
    box.close()


async def test_a_dropped_connection_is_opened_again(server):
    box = adapter(server)
    deliver(server, "bob@example.com", "QDROP1")
    ref = await box.find(CopyRef("bob@example.com", "INBOX", "", queue_id="QDROP1"))
    box.drop_connection("bob@example.com")
    moved = await box.move(ref, "Quarantine")
    assert moved.folder == "Quarantine"
    box.close()


async def test_drop_between_copy_and_expunge_neither_doubles_nor_loses(server_without_move):
    server = server_without_move
    holder: list[ImapMailbox] = []

    def fault(step: str) -> None:
        if step == "copied" and not getattr(fault, "done", False):
            fault.done = True
            holder[0].drop_connection("eve@example.com")

    box = ImapMailbox(adapter(server).config, fault=fault)
    holder.append(box)
    deliver(server, "eve@example.com", "QHALF1")
    ref = CopyRef("eve@example.com", "INBOX", "", queue_id="QHALF1")
    before_q = count(server, "eve@example.com", "Quarantine")
    before_i = count(server, "eve@example.com", "INBOX")
    moved = await box.move(ref, "Quarantine")
    assert moved.folder == "Quarantine"
    assert count(server, "eve@example.com", "Quarantine") == before_q + 1
    assert count(server, "eve@example.com", "INBOX") == before_i - 1
    box.close()


async def test_a_mailbox_that_went_away_is_a_clear_error(server):
    box = adapter(server)
    with pytest.raises(CopyGone, match="cannot log in to the mailbox of gone@example.com"):
        await box.find(CopyRef("gone@example.com", "INBOX", "", queue_id="Q"))
    # A copy that is nowhere is gone too, not an endless retry.
    with pytest.raises(CopyGone, match="none of its folders"):
        await box.move(CopyRef("bob@example.com", "INBOX", "", queue_id="QNONE"),
                       "Quarantine")
    box.close()


async def test_per_user_passwords_from_a_file(server, tmp_path):
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"Bob@Example.com": "%s"}' % dc.USER_PASSWORD)
    box = ImapMailbox(ImapConfig(port=server.imap_port, security="none", auth="user",
                                 passwords_file=str(passwords)))
    deliver(server, "bob@example.com", "QUSER1")
    moved = await box.move(CopyRef("bob@example.com", "INBOX", "", queue_id="QUSER1"), "Junk")
    assert moved.folder == "Junk"
    with pytest.raises(CopyGone, match="no IMAP password for eve@example.com"):
        await box.find(CopyRef("eve@example.com", "INBOX", "", queue_id="QUSER1"))
    box.close()
