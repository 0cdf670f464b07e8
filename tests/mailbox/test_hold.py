"""Hold mode: a pulled copy leaves the mailbox, waits in mailward's quarantine,
and comes back as itself, over the Maildir store, a real Dovecot and a local
Graph server."""

from __future__ import annotations

import smtplib

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from mailward.config import Settings
from mailward.mailbox.base import HELD, CopyRef, MailboxError
from mailward.mailbox.imap import ImapConfig, ImapMailbox
from mailward.mailbox.maildir import MaildirStore
from mailward.mailbox.retract import ALREADY, FAILED, PULLED, RESTORED, Retractor
from mailward.quarantine import pulled_path
from mailward.store.models import Copy, QuarantineItem, Retraction
from tests.conftest import need
from tests.mailbox.test_retract import add_copy, store  # noqa: F401 (fixture)
from tests.support import dovecot as dc


def test_the_mode_is_validated_with_a_clear_error():
    with pytest.raises(ValueError, match="trap.retract_mode: 'bin' is neither folder nor hold"):
        Settings.model_validate({"trap": {"retract_mode": "bin"}})
    assert Settings.model_validate({}).trap.retract_mode == "folder"


async def held_items(store) -> list[QuarantineItem]:
    async with store.session() as session:
        return list((await session.scalars(select(QuarantineItem))).all())


async def test_maildir_copy_is_held_outside_the_mailbox_and_restored_as_itself(store,
                                                                                tmp_path):
    maildir = MaildirStore(tmp_path / "mailboxes")
    data = b"Subject: parcel\r\nMessage-ID: <QH1@x>\r\n\r\npay here\r\n"
    native = await maildir.deliver("bob@example.com", data, "INBOX", "QH1", 1_000_000)
    home = tmp_path / "mailboxes/example.com/bob"
    (home / "new" / native).rename(home / "cur" / f"{native}:2,FS")
    copy = await add_copy(store, "QH1", "bob@example.com", "maildir", native)
    service = Retractor(store, {"maildir": maildir}, backoff=0.01, mode="hold",
                        data_dir=tmp_path / "data")

    pulled = await service.retract(copy, "phish indicator")
    assert (pulled.status, pulled.was_read, pulled.to_folder) == (PULLED, True, HELD)
    # In no folder of the mailbox, Quarantine included.
    assert maildir.path_of(CopyRef("bob@example.com", "INBOX", native)) is None
    assert not any((home / ".Quarantine").rglob("*QH1*"))
    [item] = await held_items(store)
    assert (item.copy_id, item.status, item.origin_folder) == (copy.id, "held", "INBOX")
    assert item.flags == ["\\Flagged", "\\Seen"] and item.internal_date == 1_000_000
    assert pulled_path(tmp_path / "data", item.id).read_bytes() == data

    # Nothing pulled twice: the second pull neither writes nor removes anything.
    assert (await service.retract(copy, "again")).status == ALREADY
    assert len(await held_items(store)) == 1

    restored = await service.restore(copy)
    assert (restored.status, restored.from_folder, restored.to_folder) == (
        RESTORED, HELD, "INBOX")
    back = home / "cur" / f"{native}:2,FS"
    assert back.read_bytes() == data and int(back.stat().st_mtime) == 1_000_000
    [item] = await held_items(store)
    assert item.status == "released"
    assert not pulled_path(tmp_path / "data", item.id).exists()
    async with store.session() as session:
        row = await session.get(Copy, copy.id)
    assert (row.folder, row.state, row.native_id) == ("INBOX", "delivered", native)


async def test_maildir_unread_copy_returns_to_new(store, tmp_path):
    maildir = MaildirStore(tmp_path / "mailboxes")
    native = await maildir.deliver("amy@example.com", b"Subject: x\r\n\r\nx\r\n", "Junk",
                                   "QH2", 1_000)
    copy = await add_copy(store, "QH2", "amy@example.com", "maildir", native)
    service = Retractor(store, {"maildir": maildir}, backoff=0.01, mode="hold",
                        data_dir=tmp_path / "data")
    assert (await service.retract(copy, "t")).from_folder == "Junk"
    assert (await service.restore(copy)).to_folder == "Junk"
    assert (tmp_path / "mailboxes/example.com/amy/.Junk/new" / native).exists()


async def test_the_bytes_are_kept_before_the_mailbox_loses_the_copy(store, tmp_path):
    maildir = MaildirStore(tmp_path / "mailboxes")
    native = await maildir.deliver("cat@example.com", b"Subject: x\r\n\r\nx\r\n", "INBOX",
                                   "QH3", 1_000)
    copy = await add_copy(store, "QH3", "cat@example.com", "maildir", native)
    alerts = []

    async def alert(result):
        alerts.append(result)

    # A quarantine directory that cannot be written: the pull fails, the copy stays.
    blocked = tmp_path / "data"
    blocked.mkdir()
    (blocked / "quarantine").write_text("not a directory")
    service = Retractor(store, {"maildir": maildir}, backoff=0.01, attempts=2, mode="hold",
                        data_dir=blocked, alert=alert)
    result = await service.retract(copy, "t")
    assert result.status == FAILED and alerts == [result]
    assert (tmp_path / "mailboxes/example.com/cat/new" / native).exists()
    assert await held_items(store) == []

    # Removal failing after the bytes are kept: the next pull finishes, once.
    service = Retractor(store, {"maildir": maildir}, backoff=0.01, attempts=1, mode="hold",
                        data_dir=tmp_path / "good")

    async def broken_remove(ref):
        raise MailboxError("connection lost")

    original = maildir.remove
    maildir.remove = broken_remove
    assert (await service.retract(copy, "t")).status == FAILED
    maildir.remove = original
    assert len(await held_items(store)) == 1
    assert (tmp_path / "mailboxes/example.com/cat/new" / native).exists()
    assert (await service.retract(copy, "t")).status == PULLED
    assert len(await held_items(store)) == 1
    assert not (tmp_path / "mailboxes/example.com/cat/new" / native).exists()


def lmtp(server, user: str, data: bytes) -> None:
    with smtplib.LMTP("127.0.0.1", server.lmtp_port) as client:
        client.sendmail("a@sender.example", [user], data)


def imap_as(server, user: str) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False)
    client.login(f"{user}*{dc.MASTER_USER}", dc.MASTER_PASSWORD)
    return client


async def test_imap_copy_is_expunged_by_uid_held_and_appended_back(store, tmp_path):
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    server = dc.Dovecot(["bob@example.com"], capabilities="IMAP4rev1 UIDPLUS").start()
    try:
        data = (b"Subject: campaign\r\nMessage-ID: <QHI@sender.example>\r\n"
                b"X-Mailward-Queue-Id: QHI\r\n\r\nbody\r\n")
        lmtp(server, "bob@example.com", data)
        lmtp(server, "bob@example.com", b"Subject: other\r\n\r\nkeep me\r\n")
        client = imap_as(server, "bob@example.com")
        client.select_folder("INBOX")
        uids = sorted(client.search(["ALL"]))
        mine, other = uids
        client.add_flags([mine], [b"\\Seen", b"\\Flagged"])
        # The user's own message marked deleted must survive our expunge.
        client.add_flags([other], [b"\\Deleted"])
        before = client.fetch([mine], [b"BODY.PEEK[]", b"INTERNALDATE"])[mine]
        client.logout()
        await add_copy(store, "QHI", "bob@example.com", "relay", "250 ok",
                       message_id="<QHI@sender.example>")
        imap = ImapMailbox(ImapConfig(port=server.imap_port, security="none",
                                      admin_user=dc.MASTER_USER,
                                      admin_password=dc.MASTER_PASSWORD))
        service = Retractor(store, {"relay": imap}, backoff=0.01, mode="hold",
                            data_dir=tmp_path / "data")
        [pulled] = await service.retract_message("<QHI@sender.example>", "bad URL")
        assert (pulled.status, pulled.was_read) == (PULLED, True)
        client = imap_as(server, "bob@example.com")
        for folder in ("INBOX", "Quarantine", "Junk"):
            if client.folder_exists(folder):
                client.select_folder(folder, readonly=True)
                assert client.search(["HEADER", "X-Mailward-Queue-Id", "QHI"]) == []
        client.select_folder("INBOX", readonly=True)
        assert client.search(["ALL"]) == [other]
        client.logout()
        [item] = await held_items(store)
        assert pulled_path(tmp_path / "data", item.id).read_bytes() == before[b"BODY[]"]
        assert set(item.flags) == {"\\Seen", "\\Flagged"}
        assert [r.status for r in await service.retract_message("QHI", "t")] == [ALREADY]

        [back] = await service.restore_message("QHI")
        assert (back.status, back.to_folder) == (RESTORED, "INBOX")
        # A restore asked again finds it back and appends nothing.
        async with store.session() as session:
            copy = await session.scalar(select(Copy).where(Copy.queue_id == "QHI"))
        client = imap_as(server, "bob@example.com")
        client.select_folder("INBOX", readonly=True)
        [uid] = client.search(["HEADER", "X-Mailward-Queue-Id", "QHI"])
        now = client.fetch([uid], [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])[uid]
        client.logout()
        assert now[b"BODY[]"] == before[b"BODY[]"]
        assert {b"\\Seen", b"\\Flagged"} <= set(now[b"FLAGS"])
        assert now[b"INTERNALDATE"] == before[b"INTERNALDATE"]
        assert copy.native_id.endswith(f":{uid}") and copy.state == "delivered"
        async with store.session() as session:
            statuses = (await session.scalars(select(Retraction.status).where(
                Retraction.copy_id == copy.id).order_by(Retraction.id))).all()
        assert statuses == [PULLED, ALREADY, RESTORED]
        imap.close()
    finally:
        server.stop()


async def test_imap_drop_during_removal_neither_doubles_nor_loses(store, tmp_path):
    need(dc.available(), "Dovecot (Debian dovecot-imapd, dovecot-lmtpd)")
    server = dc.Dovecot(["eve@example.com"]).start()
    try:
        lmtp(server, "eve@example.com", b"Subject: x\r\nMessage-ID: <QHD@s>\r\n"
                                        b"X-Mailward-Queue-Id: QHD\r\n\r\nbody\r\n")
        await add_copy(store, "QHD", "eve@example.com", "relay", "250 ok",
                       message_id="<QHD@s>")
        dropped = []
        imap: ImapMailbox

        def fault(step: str) -> None:
            if step == "removing" and not dropped:
                dropped.append(step)
                imap.drop_connection("eve@example.com")

        imap = ImapMailbox(ImapConfig(port=server.imap_port, security="none",
                                      admin_user=dc.MASTER_USER,
                                      admin_password=dc.MASTER_PASSWORD), fault=fault)
        service = Retractor(store, {"relay": imap}, backoff=0.01, mode="hold",
                            data_dir=tmp_path / "data")
        [pulled] = await service.retract_message("QHD", "t")
        assert dropped and pulled.status == PULLED
        assert len(await held_items(store)) == 1
        client = imap_as(server, "eve@example.com")
        client.select_folder("INBOX", readonly=True)
        assert client.search(["ALL"]) == []
        client.logout()
        assert [r.status for r in await service.restore_message("QHD")] == [RESTORED]
        imap.close()
    finally:
        server.stop()


async def test_graph_copy_waits_in_a_hidden_folder_and_is_moved_back(store, tmp_path):
    from mailward.config import GraphSettings
    from mailward.mailbox.graph import GraphMailbox
    from tests.support.graphserver import SECRET, GraphServer

    graph = GraphServer(["amy@example.com"]).start()
    try:
        mime = b"Message-ID: <g1@x>\r\nSubject: pay\r\n\r\nlink\r\n"
        graph.add("amy@example.com", "<g1@x>", read=True, folder="junkemail", mime=mime)
        await add_copy(store, "QHG", "amy@example.com", "relay", "250 ok",
                       message_id="<g1@x>")
        box = GraphMailbox.from_settings(GraphSettings(
            tenant_id="tenant-1", client_id="app-1", client_secret=SECRET,
            endpoint=graph.endpoint, authority=graph.authority, timeout=10))
        service = Retractor(store, {"relay": box}, backoff=0.01, mode="hold",
                            data_dir=tmp_path / "data")
        [pulled] = await service.retract_message("QHG", "phish")
        assert (pulled.status, pulled.was_read, pulled.from_folder) == (PULLED, True, "Junk")
        assert graph.folder_of("amy@example.com", "<g1@x>") == "mailward-held"
        assert graph.folders["amy@example.com"]["mailward-held"] in graph.hidden
        [item] = await held_items(store)
        assert pulled_path(tmp_path / "data", item.id).read_bytes() == mime
        assert item.flags == ["\\Seen"] and item.origin_folder == "Junk"
        # Held: found in none of the user's folders, and not pulled twice.
        assert await box.find(CopyRef("amy@example.com", "Junk", "", "<g1@x>")) is None
        assert [r.status for r in await service.retract_message("QHG", "t")] == [ALREADY]
        assert sum(r == "POST /v1.0/users/amy@example.com/mailFolders"
                   for r in graph.requests) == 1

        [back] = await service.restore_message("QHG")
        assert (back.status, back.to_folder) == (RESTORED, "Junk")
        assert graph.folder_of("amy@example.com", "<g1@x>") == "junkemail"
        [message] = graph.messages["amy@example.com"].values()
        assert message["isRead"] and graph.mime[message["id"]] == mime
        async with store.session() as session:
            copy = await session.scalar(select(Copy).where(Copy.queue_id == "QHG"))
        assert copy.native_id == message["id"] and copy.state == "delivered"
        # A restore asked again finds it back where it belongs and moves nothing.
        moves = sum(r.endswith("/move") for r in graph.requests)
        assert [r.status for r in await service.restore_message("QHG")] == [ALREADY]
        assert sum(r.endswith("/move") for r in graph.requests) == moves
    finally:
        graph.stop()
