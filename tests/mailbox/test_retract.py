"""The retract/restore service over the Maildir store and a real Dovecot."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from mailward.mailbox.base import MailboxError
from mailward.mailbox.imap import ImapConfig, ImapMailbox
from mailward.mailbox.maildir import MaildirStore
from mailward.mailbox.retract import (ALREADY, EXEMPT, FAILED, GONE, KEPT, PULLED,
                                      RESTORED, Retractor)
from mailward.store import Store
from mailward.store.models import Copy, MessageRecord, Retraction
from tests.conftest import need
from tests.support import dovecot as dc


@pytest.fixture
async def store(database_url):
    from mailward.config import Settings

    url = Settings.model_validate({"storage": {"database_url": database_url}}).database_url
    instance = Store(url)
    await instance.migrate()
    yield instance
    await instance.close()


async def add_copy(store: Store, queue_id: str, recipient: str, mailbox: str,
                   native: str = "", message_id: str = "") -> Copy:
    now = datetime.now(UTC)
    async with store.session() as session:
        if await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == queue_id)) is None:
            session.add(MessageRecord(queue_id=queue_id, received_at=now,
                                      message_id=message_id or f"<{queue_id}@x>",
                                      recipients=[recipient], state="done"))
            await session.flush()
        copy = Copy(queue_id=queue_id, message_id=message_id or f"<{queue_id}@x>",
                    recipient=recipient, mailbox=mailbox, folder="INBOX", native_id=native,
                    sender="a@sender.example", sender_domain="sender.example",
                    delivered_at=now)
        session.add(copy)
        await session.commit()
        return copy


async def test_maildir_pull_records_read_state_and_restore_puts_it_back(store, tmp_path):
    maildir = MaildirStore(tmp_path / "mailboxes")
    native = await maildir.deliver("bob@example.com", b"Subject: x\r\n\r\nhi\r\n", "INBOX",
                                   "QR1", 1000)
    home = tmp_path / "mailboxes/example.com/bob"
    (home / "new" / native).rename(home / "cur" / f"{native}:2,S")
    copy = await add_copy(store, "QR1", "bob@example.com", "maildir", native)
    service = Retractor(store, {"maildir": maildir}, backoff=0.01)

    result = await service.retract(copy, "test")
    assert (result.status, result.was_read, result.from_folder) == (PULLED, True, "INBOX")
    assert (home / ".Quarantine/cur" / f"{native}:2,S").exists()
    assert (await service.retract(copy, "again")).status == ALREADY
    restored = await service.restore(copy)
    assert restored.status == RESTORED and restored.to_folder == "INBOX"
    # As itself: the same file name, the same flags.
    assert (home / "cur" / f"{native}:2,S").exists()
    async with store.session() as session:
        row = await session.get(Copy, copy.id)
        statuses = (await session.scalars(select(Retraction.status).where(
            Retraction.copy_id == copy.id).order_by(Retraction.id))).all()
    assert (row.folder, row.state) == ("INBOX", "delivered")
    assert statuses == [PULLED, ALREADY, RESTORED]


async def test_rules_exempt_unread_only_gone_and_failure_alert(store, tmp_path):
    maildir = MaildirStore(tmp_path / "mailboxes")
    native = await maildir.deliver("soc@example.com", b"x", "INBOX", "QR2", 1000)
    soc = await add_copy(store, "QR2", "soc@example.com", "maildir", native)
    native = await maildir.deliver("amy@example.com", b"x", "INBOX", "QR3", 1000)
    home = tmp_path / "mailboxes/example.com/amy"
    (home / "new" / native).rename(home / "cur" / f"{native}:2,S")
    read = await add_copy(store, "QR3", "amy@example.com", "maildir", native)
    gone = await add_copy(store, "QR4", "zed@example.com", "maildir", "1.QR4_x")
    remote = await add_copy(store, "QR5", "kim@example.com", "relay", "")
    alerts = []

    async def alert(result):
        alerts.append(result)

    service = Retractor(store, {"maildir": maildir}, exempt=["SOC@example.com"],
                        backoff=0.01, alert=alert)
    assert (await service.retract(soc, "t")).status == EXEMPT
    assert (await service.retract(read, "spam", only_unread=True)).status == KEPT
    assert (await service.retract(gone, "t")).status == GONE
    failed = await service.retract(remote, "t")
    assert failed.status == FAILED and failed.attempts == 3
    assert "trap.remote_mailbox" in failed.error
    assert alerts == [failed]
    with pytest.raises(MailboxError, match="no delivered copy"):
        await service.retract_message("<nothing@x>", "t")


async def test_imap_copies_move_to_quarantine_and_back(store):
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    server = dc.Dovecot(["bob@example.com", "eve@example.com"]).start()
    try:
        for user in ("bob@example.com", "eve@example.com"):
            data = (b"Subject: campaign\r\nMessage-ID: <QI1@sender.example>\r\n"
                    b"X-Mailward-Queue-Id: QI1\r\n\r\nbody\r\n")
            with smtplib.LMTP("127.0.0.1", server.lmtp_port) as client:
                client.sendmail("a@sender.example", [user], data)
            await add_copy(store, "QI1", user, "relay", "250 ok",
                           message_id="<QI1@sender.example>")
        imap = ImapMailbox(ImapConfig(port=server.imap_port, security="none",
                                      admin_user=dc.MASTER_USER,
                                      admin_password=dc.MASTER_PASSWORD))
        service = Retractor(store, {"relay": imap}, backoff=0.01)
        results = await service.retract_message("<QI1@sender.example>", "bad URL")
        assert [r.status for r in results] == [PULLED, PULLED]
        for user in ("bob@example.com", "eve@example.com"):
            assert list((server.maildir(user) / ".Quarantine/new").iterdir())
            assert not list((server.maildir(user) / "new").iterdir())
        again = await service.retract_message("QI1", "bad URL")
        assert [r.status for r in again] == [ALREADY, ALREADY]
        back = await service.restore_message("QI1")
        assert [r.status for r in back] == [RESTORED, RESTORED]
        assert list((server.maildir("bob@example.com") / "new").iterdir())
        imap.close()
    finally:
        server.stop()
