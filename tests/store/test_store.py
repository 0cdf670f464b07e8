"""The store on SQLite and PostgreSQL: migrations, acceptance records, intel, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailward.config import load_settings
from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.intel.store import IndicatorError, IntelCache, NewIndicator
from mailward.store import Store
from mailward.store.models import Copy, Delivery, MessageFile, MessageRecord, MessageUrl
from mailward.web.tokens import create_token, revoke_token, verify_token
from tests.test_end_to_end import EICAR, attachment_message


@pytest.fixture
async def gateway(tmp_path, database_url):
    settings = load_settings(overrides={"storage.data_dir": str(tmp_path / "data"),
                                        "storage.database_url": database_url})
    instance = Gateway(settings)
    await instance.start()
    yield instance
    await instance.close()


async def test_migrations_are_idempotent(gateway):
    await gateway.services.store.migrate()
    async with gateway.services.store.session() as session:
        assert await session.scalar(select(func.count()).select_from(MessageRecord)) == 0


async def count(store: Store, model, *where) -> int:
    async with store.session() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def test_an_accepted_message_is_recorded_indexed_and_delivered_once(gateway):
    raw = (b"From: Dana <dana@example.org>\r\nTo: u@example.com\r\nSubject: links\r\n"
           b"Message-ID: <m1@example.org>\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
           b"--z\r\n\r\nsee https://docs.example.org/a and https://docs.example.org/a\r\n"
           b"--z\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
           b"filename=a.pdf\r\n\r\n%PDF-1.4 fake\r\n--z--\r\n")
    envelope = Envelope(new_queue_id(), "dana@example.org", ["u@example.com", "v@example.com"],
                        peer_ip="192.0.2.1")
    reply = await gateway.receive(envelope, raw)
    assert reply.code == 250
    store = gateway.services.store
    assert await count(store, MessageUrl, MessageUrl.queue_id == envelope.queue_id) == 1
    assert await count(store, MessageFile, MessageFile.queue_id == envelope.queue_id) == 1
    assert await count(store, Delivery, Delivery.status == "pending") == 2
    await gateway.queue.run_once()
    await gateway.queue.run_once()
    assert await count(store, Delivery, Delivery.status == "delivered") == 2
    async with store.session() as session:
        copies = (await session.scalars(select(Copy).order_by(Copy.recipient))).all()
        record = await session.scalar(select(MessageRecord))
    assert [c.recipient for c in copies] == ["u@example.com", "v@example.com"]
    assert all(c.mailbox == "maildir" and c.folder == "INBOX" and c.native_id for c in copies)
    assert copies[0].message_id == "<m1@example.org>" and copies[0].sender == "dana@example.org"
    assert record.state == "done" and record.received_at.tzinfo is not None
    assert gateway.spool.find(envelope.queue_id).parent.parent == gateway.spool.archive
    # A second pass delivers nothing again.
    assert await gateway.queue.run_once() == 0


async def test_rejected_mail_is_recorded_but_not_kept(gateway):
    envelope = Envelope(new_queue_id(), "x@example.org", ["u@example.com"])
    reply = await gateway.receive(envelope, attachment_message("a.com", EICAR))
    assert reply.code == 550
    async with gateway.services.store.session() as session:
        record = await session.scalar(select(MessageRecord))
    assert record.state == "rejected" and record.action == "reject"
    assert gateway.spool.find(envelope.queue_id) is None


async def test_intel_store_dedupes_normalises_and_expires(gateway):
    intel = gateway.services.intel
    added, updated = await intel.add_many([
        NewIndicator("domain", "Evil.Example.NET."), NewIndicator("domain", "evil.example.net"),
        NewIndicator("url", "HTTPS://Login.Example.net:443/a#frag"),
        NewIndicator("sha256", "A" * 64, category="malware"),
        NewIndicator("ip", "192.0.2.0/24"),
        NewIndicator("domain", "old.example", expires_at=datetime.now(UTC) - timedelta(1))])
    assert (added, updated) == (5, 1)
    cache = IntelCache(intel)
    await cache.refresh(force=True)
    assert cache.domain("www.evil.example.net").value == "evil.example.net"
    assert cache.url("https://login.example.net/a") is not None
    assert cache.sha256("a" * 64).category == "malware"
    assert cache.ip("192.0.2.44") is not None and cache.ip("198.51.100.1") is None
    assert cache.domain("old.example") is None
    assert await intel.expire() == 1
    generation = await intel.generation()
    await intel.add("domain", "new.example")
    assert await intel.generation() > generation
    with pytest.raises(IndicatorError):
        await intel.add("sha256", "not-a-hash")


async def test_tokens_are_stored_hashed_and_revocable(gateway):
    store = gateway.services.store
    token = await create_token(store, "ci")
    row = await verify_token(store, token)
    assert row is not None and token not in row.token_hash
    assert await verify_token(store, token + "x") is None
    assert await revoke_token(store, row.id)
    assert await verify_token(store, token) is None
