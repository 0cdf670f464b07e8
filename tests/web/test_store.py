"""The console's store code on SQLite and PostgreSQL: migration, accounts, scoping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailward.config import Settings
from mailward.quarantine import Filters, Quarantine
from mailward.store import Store
from mailward.store.models import DmarcEvaluation, MessageRecord, QuarantineItem
from mailward.web import dashboards
from mailward.web.accounts import AccountError, Accounts, parse_schedule
from mailward.web.senders import SenderRuleError, SenderRules
from mailward.web.tokens import create_token, verify_token
from tests.web.support import PASSWORD


@pytest.fixture
async def store(database_url, tmp_path):
    settings = Settings.model_validate({"storage": {"database_url": database_url,
                                                    "data_dir": str(tmp_path / "data")}})
    opened = Store(settings.database_url)
    await opened.migrate()
    yield opened
    await opened.close()


async def test_accounts_sessions_and_throttling(store):
    accounts = Accounts(store)
    user = await accounts.create("alice", PASSWORD, "user", ["Alice@Example.com", "a@x.example"])
    assert user.addresses == ["alice@example.com", "a@x.example"]
    with pytest.raises(AccountError):
        await accounts.create("alice", PASSWORD, "user", [])
    with pytest.raises(AccountError):
        await accounts.create("bob", PASSWORD, "root", [])
    with pytest.raises(AccountError):
        await accounts.create("bob", PASSWORD, "user", ["not an address"])
    # An empty password is a short one; only None (no password at all) is not.
    with pytest.raises(AccountError, match="at least 10"):
        await accounts.create("bob", "", "user", [])
    assert (await accounts.create("carl", None, "user", [])).password_hash == ""
    assert await accounts.authenticate("alice", "wrong password", "192.0.2.1") is None
    assert await accounts.authenticate("nobody", PASSWORD, "192.0.2.1") is None
    assert await accounts.authenticate("alice", "wrong again", "192.0.2.2") is None
    # Limits: per user and address, per address, per user across addresses.
    pair, address, everywhere = ("this user from this address", "this address",
                                 "this user from all addresses")
    assert await accounts.throttled("alice", "192.0.2.1", 60, 1, 100, 100) == pair
    assert await accounts.throttled("alice", "192.0.2.9", 60, 1, 100, 100) == ""
    assert await accounts.throttled("alice", "192.0.2.9", 60, 1, 100, 2) == everywhere
    assert await accounts.throttled("x", "192.0.2.1", 60, 100, 2, 100) == address
    assert await accounts.throttled("alice", "192.0.2.9", 60, 2, 100, 3) == ""
    found = await accounts.authenticate("alice", PASSWORD, "192.0.2.1")
    assert found is not None and found.id == user.id
    # A login forgets its own address's failures only.
    assert await accounts.throttled("alice", "192.0.2.1", 60, 1, 100, 100) == ""
    assert await accounts.throttled("alice", "192.0.2.2", 60, 1, 100, 100) == pair
    secret, session = await accounts.open_session(user, 3600, "192.0.2.1", "test")
    assert session.id != secret and len(session.csrf_token) >= 32
    assert (await accounts.session_user(secret))[1].username == "alice"
    assert await accounts.session_user(secret + "x") is None
    await accounts.update(user.id, disabled=True)
    assert await accounts.session_user(secret) is None
    assert await accounts.authenticate("alice", PASSWORD, "192.0.2.1") is None


async def test_expired_sessions_do_not_count(store):
    accounts = Accounts(store)
    user = await accounts.create("carol", PASSWORD, "admin", [])
    secret, _ = await accounts.open_session(user, -1, "", "")
    assert await accounts.session_user(secret) is None


def test_schedules():
    assert [parse_schedule(s) for s in ("off", "daily", "6", "12h")] == [0, 24, 6, 12]
    for bad in ("weekly", "-1", "0.5", "100000"):
        with pytest.raises(AccountError):
            parse_schedule(bad)


async def test_tokens_bound_to_a_user_with_scopes(store):
    user = await Accounts(store).create("dave", PASSWORD, "user", ["dave@example.com"])
    value = await create_token(store, "dave-script", ["quarantine:read"], user.id)
    token = await verify_token(store, value)
    assert token.user_id == user.id and token.scopes == ["quarantine:read"]
    with pytest.raises(ValueError):
        await create_token(store, "bad", ["quarantine read"])


async def _held(store, queue_id: str, recipients: list[str]) -> None:
    now = datetime.now(UTC)
    async with store.session() as session:
        session.add(MessageRecord(queue_id=queue_id, received_at=now, recipients=recipients,
                                  verdict={}, envelope={}))
        await session.flush()
        session.add(QuarantineItem(id=f"q{queue_id}", queue_id=queue_id, created_at=now,
                                   category="spam", recipients=recipients, sender="s@x.example"))
        await session.commit()


async def test_owner_filter_matches_whole_addresses_only(store):
    await _held(store, "q1", ["alice@example.com"])
    await _held(store, "q2", ["malice@example.com"])
    await _held(store, "q3", ["Bob@Example.com", "alice@example.com"])
    await _held(store, "q4", ["b%b@example.com"])

    class FakeGateway:  # only the store is used by Quarantine.list
        services = type("S", (), {"store": store})()

    quarantine = Quarantine(FakeGateway())
    items, total = await quarantine.list(Filters(owner=("alice@example.com",)))
    assert {i.queue_id for i in items} == {"q1", "q3"} and total == 2
    items, _ = await quarantine.list(Filters(owner=("bob@example.com",)))
    assert {i.queue_id for i in items} == {"q3"}
    items, _ = await quarantine.list(Filters(owner=("b%b@example.com",)))
    assert {i.queue_id for i in items} == {"q4"}
    assert (await quarantine.list(Filters(owner=())))[1] == 0
    items, _ = await quarantine.list(Filters(since=datetime.now(UTC) + timedelta(hours=1)))
    assert items == []


async def test_sender_rules_decide_for_everyone_or_every_recipient(store):
    rules = SenderRules(store)
    await rules.add("allow", "news@shop.example", "alice@example.com", "test")
    assert await rules.decide("news@shop.example", ["alice@example.com"]) == (
        "allow", "news@shop.example matches allow rules of alice@example.com")
    assert await rules.decide("news@shop.example", ["alice@example.com",
                                                    "bob@example.com"]) is None
    await rules.add("block", "@spam.example", "", "test")
    kind, _ = await rules.decide("x@spam.example", ["bob@example.com"])
    assert kind == "block"
    assert await rules.decide("x@sub.spam.example", ["bob@example.com"]) is None
    # Adding the opposite rule replaces the first.
    await rules.add("block", "news@shop.example", "alice@example.com", "test")
    assert (await rules.decide("news@shop.example", ["alice@example.com"]))[0] == "block"
    assert len(await rules.list()) == 2
    for bad in ("", "no-at-sign", "a@b@c", "@"):
        with pytest.raises(SenderRuleError):
            await rules.add("allow", bad, "", "test")


async def test_dmarc_dashboard_counts_evaluations_by_from_domain(store):
    now = datetime.now(UTC)
    async with store.session() as session:
        for domain, result, age in (("example.org", "pass", 1), ("example.org", "pass", 2),
                                    ("example.org", "fail", 3), ("Bad.Example", "fail", 1),
                                    ("old.example", "pass", 100)):
            session.add(DmarcEvaluation(queue_id=f"{domain}{age}"[:32], header_from=domain,
                                        policy_domain=domain.lower(), result=result,
                                        evaluated_at=now - timedelta(hours=age)))
        await session.commit()
    data = await dashboards.dmarc(store, hours=24)
    assert data["results"] == ["fail", "pass"]
    assert data["domains"] == [
        {"domain": "example.org", "total": 3, "results": {"pass": 2, "fail": 1}},
        {"domain": "bad.example", "total": 1, "results": {"fail": 1}}]
