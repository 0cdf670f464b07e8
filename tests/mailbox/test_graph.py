"""The Microsoft Graph adapter at the HTTP level, against a local Graph server."""

from __future__ import annotations

import pytest

from mailward.config import GraphSettings
from mailward.mailbox.base import CopyGone, CopyRef, MailboxError
from mailward.mailbox.graph import GraphMailbox
from tests.support.graphserver import SECRET, GraphServer


@pytest.fixture
def graph():
    server = GraphServer(["amy@example.com"]).start()
    yield server
    server.stop()


def adapter(server: GraphServer, secret: str = SECRET) -> GraphMailbox:
    return GraphMailbox.from_settings(GraphSettings(
        tenant_id="tenant-1", client_id="app-1", client_secret=secret,
        endpoint=server.endpoint, authority=server.authority, timeout=10))


async def test_find_move_to_a_new_quarantine_folder_and_back(graph):
    graph.add("amy@example.com", "<m1@x>", read=True)
    box = adapter(graph)
    ref = await box.find(CopyRef("amy@example.com", "INBOX", "", "<m1@x>"))
    assert ref.folder == "INBOX" and ref.native_id
    assert await box.is_read(ref)
    moved = await box.move(ref, "Quarantine")
    assert moved.folder == "Quarantine" and moved.native_id != ref.native_id
    assert graph.folder_of("amy@example.com", "<m1@x>") == "Quarantine"
    # Asked again: nothing moves twice.
    assert (await box.move(ref, "Quarantine")).native_id == moved.native_id
    back = await box.move(moved, "INBOX")
    assert graph.folder_of("amy@example.com", "<m1@x>") == "inbox"
    assert back.folder == "INBOX"
    assert sum(r.startswith("POST /tenant-1/oauth2") for r in graph.requests) == 1


async def test_throttling_is_retried_by_the_sdk(graph):
    graph.add("amy@example.com", "<m2@x>")
    graph.throttle_next_move = True
    box = adapter(graph)
    moved = await box.move(CopyRef("amy@example.com", "INBOX", "", "<m2@x>"), "Junk")
    assert moved.folder == "Junk"
    assert sum(r.endswith("/move") for r in graph.requests) == 2


async def test_gone_mailboxes_bad_credentials_and_quotes(graph):
    box = adapter(graph)
    with pytest.raises(CopyGone):
        await box.find(CopyRef("left@example.com", "INBOX", "", "<m@x>"))
    assert await box.find(CopyRef("amy@example.com", "INBOX", "", "<x' or 1 eq 1 or 'a@x>")) \
        is None
    with pytest.raises(MailboxError, match="token endpoint answered 401"):
        await adapter(graph, "wrong").find(CopyRef("amy@example.com", "INBOX", "", "<m@x>"))
