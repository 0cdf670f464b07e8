"""Retro-scan over the message index: rules, refusals, idempotence, policy, alerts."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailward.config import Settings
from mailward.intel.store import NewIndicator, url_hash
from mailward.mailbox.maildir import MaildirStore
from mailward.store import Store
from mailward.store.models import (Copy, ForwardLink, Incident, MessageFile,
                                   MessageFingerprint, MessageRecord, MessageUrl, Retraction)
from mailward.trap import incidents as workflow
from mailward.trap.intake import add_checked
from mailward.trap.lookup import Indicator
from mailward.trap.notify import Notifier
from mailward.trap.policy import apply_rule, body_tlsh, campaign_rule
from mailward.trap.retroscan import Retroscan
from tests.support.dnsserver import free_port

PHISH_TEXT = ("Your parcel could not be delivered. Confirm your address and pay the customs "
              "fee of 1.99 EUR within 48 hours at the link below or it is sent back. ") * 3


def settings_for(database_url: str, tmp_path, **trap) -> Settings:
    return Settings.model_validate({
        "storage": {"database_url": database_url, "data_dir": str(tmp_path / "data")},
        "trap": {"pull_backoff": "0.01s", "max_share_min_copies": 5, **trap}})


@pytest.fixture
async def world(database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, exempt_mailboxes=["soc@example.com"])
    store = Store(settings.database_url)
    await store.migrate()
    yield settings, store, MaildirStore(settings.data_dir / "mailboxes")
    await store.close()


async def deliver(settings, store, maildir, queue_id: str, recipients: list[str], *,
                  urls=(), files=(), sender="x@campaign.example", text="", ip="192.0.2.1",
                  age_days: float = 0, read: bool = False) -> None:
    when = datetime.now(UTC) - timedelta(days=age_days)
    async with store.session() as session:
        session.add(MessageRecord(queue_id=queue_id, received_at=when, mail_from=sender,
                                  header_from=sender, peer_ip=ip, recipients=recipients,
                                  message_id=f"<{queue_id}@x>", state="done"))
        await session.flush()
        for url in urls:
            session.add(MessageUrl(queue_id=queue_id, url=url, url_hash=url_hash(url),
                                   domain=url.split("/")[2]))
        for digest in files:
            session.add(MessageFile(queue_id=queue_id, sha256=digest, path="a.bin"))
        if text:
            session.add(MessageFingerprint(queue_id=queue_id, tlsh=body_tlsh(text)))
        for recipient in recipients:
            native = await maildir.deliver(recipient, f"Subject: {queue_id}\r\n\r\n{text}"
                                           .encode(), "INBOX", queue_id, when.timestamp())
            if read:
                home = maildir.folder_dir(recipient, "INBOX")
                (home / "new" / native).rename(home / "cur" / f"{native}:2,S")
            session.add(Copy(queue_id=queue_id, message_id=f"<{queue_id}@x>",
                             recipient=recipient, mailbox="maildir", folder="INBOX",
                             native_id=native, sender=sender,
                             sender_domain=sender.rpartition("@")[2], delivered_at=when))
        await session.commit()


async def statuses(store) -> dict[str, str]:
    async with store.session() as session:
        rows = (await session.execute(select(Copy.recipient, Copy.queue_id, Copy.state))).all()
    return {f"{q}/{r}": s for r, q, s in rows}


async def test_rules_per_category_exempt_lookback_and_idempotence(world):
    settings, store, maildir = world
    await deliver(settings, store, maildir, "Q1", ["ann@example.com", "soc@example.com"],
                  urls=["https://a.kit.example/x"])
    await deliver(settings, store, maildir, "Q2", ["ben@example.com"], read=True,
                  urls=["https://spam.example/buy"])
    await deliver(settings, store, maildir, "Q3", ["cat@example.com"],
                  urls=["https://spam.example/buy"])
    await deliver(settings, store, maildir, "Q4", ["dan@example.com"],
                  urls=["https://a.kit.example/x"], age_days=20)
    scanner = Retroscan(settings, store)
    report = await scanner.scan([Indicator("domain", "kit.example", "phish"),
                                 Indicator("domain", "spam.example", "spam"),
                                 Indicator("domain", "nothing.example", "phish")])
    assert report.pulled == 2 and report.failed == 0
    assert await statuses(store) == {
        "Q1/ann@example.com": "retracted", "Q1/soc@example.com": "delivered",  # exempt
        "Q2/ben@example.com": "delivered",  # spam already read: left alone
        "Q3/cat@example.com": "retracted",  # spam unread: pulled
        "Q4/dan@example.com": "delivered"}  # outside the 14-day look-back
    again = await scanner.scan([Indicator("domain", "kit.example", "phish")])
    assert again.pulled == 0
    async with store.session() as session:
        pulls = await session.scalar(select(func.count()).select_from(Retraction).where(
            Retraction.status == "pulled"))
        incidents = await session.scalar(select(func.count()).select_from(Incident))
    assert pulls == 2 and incidents == 2


async def test_a_too_common_indicator_is_refused_unless_forced(world):
    settings, store, maildir = world
    for number in range(8):
        await deliver(settings, store, maildir, f"C{number}", [f"u{number}@example.com"],
                      urls=[f"https://docs.common.example/{number}"], sender="n@common.example")
    await deliver(settings, store, maildir, "R1", ["rare@example.com"],
                  urls=["https://rare.example/x"])
    report = await add_checked(settings, store, [NewIndicator("domain", "common.example"),
                                                 NewIndicator("domain", "rare.example")])
    assert report.added == 1
    assert report.refused[0][0] == "domain:common.example"
    assert "89%" in report.refused[0][1] and "--force" in report.refused[0][1]
    scanner = Retroscan(settings, store)
    assert (await scanner.run_pending()).pulled == 1
    forced = await add_checked(settings, store, [NewIndicator("domain", "common.example")],
                               force=True, actor="analyst")
    assert forced.added == 1 and not forced.refused
    assert (await scanner.run_pending()).pulled == 8


async def test_expired_indicators_are_not_scanned(world):
    settings, store, maildir = world
    await deliver(settings, store, maildir, "E1", ["eve@example.com"], files=["ab" * 32])
    past = datetime.now(UTC) - timedelta(hours=1)
    await add_checked(settings, store, [NewIndicator("sha256", "ab" * 32, expires_at=past)])
    assert (await Retroscan(settings, store).run_pending()).pulled == 0


async def test_campaign_rule_finds_look_alikes_by_fuzzy_body_hash(world):
    settings, store, maildir = world
    await deliver(settings, store, maildir, "P1", ["ann@example.com"], text=PHISH_TEXT,
                  urls=["https://parcel-fee.example/pay"], sender="a@parcel.example")
    variant = PHISH_TEXT.replace("1.99 EUR", "2.49 EUR").replace("48 hours", "two days")
    await deliver(settings, store, maildir, "P2", ["bob@example.com"], text=variant,
                  urls=["https://other-host.example/p"], sender="b@elsewhere.example",
                  ip="198.51.100.9")
    await deliver(settings, store, maildir, "P3", ["cat@example.com"],
                  text="Minutes of the Tuesday budget meeting are attached; please review "
                       "section two before Friday and send corrections to the chair. " * 3,
                  sender="c@partner.example", ip="203.0.113.5")
    scanner = Retroscan(settings, store)
    report = await scanner.scan([Indicator("url", "https://parcel-fee.example/pay")])
    [incident_id] = report.incidents
    rule = await campaign_rule(settings, store, incident_id)
    assert rule.fingerprint["tlsh"] and rule.fingerprint["sender_domains"] == ["parcel.example"]
    outcome = await apply_rule(scanner, rule)
    assert outcome["matched"] == 2 and outcome["pulled"] == 1
    assert (await statuses(store))["P2/bob@example.com"] == "retracted"
    assert (await statuses(store))["P3/cat@example.com"] == "delivered"


async def test_syslog_rfc5424_with_cef_over_udp(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", port))
    receiver.settimeout(5)
    settings = Settings.model_validate({"storage": {"data_dir": str(tmp_path)},
                                        "smtp": {"hostname": "mx.test.example"},
                                        "alerts": {"syslog": f"udp://127.0.0.1:{port}"}})
    alert = {"event": "incident-opened", "title": "phish | url", "assessment":
             "compromise suspected", "text": "a=b\nc",
             "incident": {"id": 7, "indicator": {"type": "url", "value": "https://k.example/"},
                          "summary": {"copies": 2, "pulled": 2, "human_clicks_before_pull":
                                      [{"recipient": "ann@example.com"}]}}}
    outcome = await Notifier(settings).send(alert)
    assert outcome == {"syslog": "ok"}
    line = receiver.recv(65536).decode()
    receiver.close()
    # <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG: facility 10, severity 2 -> 82
    assert line.startswith("<82>1 ") and " mx.test.example mailward " in line
    assert " incident-opened - \ufeffCEF:0|mailward|mailward|" in line
    assert "phish \\| url|10|" in line and "msg=a\\=b c" in line
    assert "cs4=ann@example.com" in line and "cn2=2" in line


async def test_alert_email_goes_through_the_relay(tmp_path, smtp_sink):
    settings = Settings.model_validate({
        "storage": {"data_dir": str(tmp_path)}, "smtp": {"hostname": "mx.test.example"},
        "alerts": {"email_to": ["soc@example.com"], "smtp_relay": smtp_sink.url}})
    outcome = await Notifier(settings).send({"event": "incident-opened", "title": "t",
                                             "text": "who and when",
                                             "incident": {"summary": {"copies": 1}}})
    assert outcome == {"email": "ok"}
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ["soc@example.com"]
    assert b"Subject: [mailward] t" in received.data and b"who and when" in received.data


async def test_policy_from_an_incident_blocks_inbound_look_alikes(world, dns_server):
    from mailward.envelope import Envelope, new_queue_id
    from mailward.gateway import Gateway
    from mailward.trap.policy import block_sender

    settings, store, maildir = world
    await deliver(settings, store, maildir, "B1", ["ann@example.com"], text=PHISH_TEXT,
                  urls=["https://parcel-fee.example/pay"], sender="a@parcel.example")
    report = await Retroscan(settings, store).scan(
        [Indicator("url", "https://parcel-fee.example/pay")])
    [incident_id] = report.incidents
    blocked = await block_sender(settings, store, incident_id, "domain", 3600)
    assert blocked == ["sender_domain:parcel.example"]
    await campaign_rule(settings, store, incident_id)

    settings = settings.model_copy(update={"dns": settings.dns.model_copy(update={
        "nameservers": [dns_server.address], "timeout": 1.0})})
    gateway = Gateway(settings)
    await gateway.start()
    try:
        async def judge(sender: str, text: str) -> set[str]:
            raw = (f"From: <{sender}>\r\nTo: <bob@example.com>\r\nSubject: parcel\r\n"
                   f"Message-ID: <{new_queue_id()}@x>\r\n\r\n{text}\r\n").encode()
            envelope = Envelope(queue_id=new_queue_id(), mail_from=sender,
                                peer_ip="198.51.100.77", helo="mx.elsewhere.example",
                                rcpt_to=["bob@example.com"])
            _, verdict, _ = await gateway.judge(envelope, raw, [])
            return {finding.symbol for finding in verdict.findings}

        assert "INTEL_SENDER_BLOCKED" in await judge("x@parcel.example", "hello")
        variant = PHISH_TEXT.replace("1.99 EUR", "3.10 EUR")
        assert "CAMPAIGN_RULE_MATCH" in await judge("y@new-sender.example", variant)
        clean = await judge("z@partner.example", "Minutes of the Tuesday budget meeting "
                            "are attached; please review section two before Friday. " * 3)
        assert not clean & {"CAMPAIGN_RULE_MATCH", "INTEL_SENDER_BLOCKED"}
    finally:
        await gateway.close()


async def test_a_late_sandbox_verdict_becomes_intelligence_and_pulls_the_copy(world):
    from mailward.attachments.sandbox import MALICIOUS, Report
    from mailward.attachments.sandbox.service import SandboxService
    from mailward.services import Services
    from mailward.store.models import SandboxJob

    settings, store, maildir = world
    digest = "cd" * 32
    await deliver(settings, store, maildir, "S1", ["sam@example.com"], files=[digest])
    services = Services.create(settings)
    await services.start()
    try:
        now = datetime.now(UTC)
        async with store.session() as session:
            job = SandboxJob(queue_id="S1", sha256=digest, name="a.js", path="a.js",
                             kind="js", backend="boxjs", status="running", created_at=now,
                             deadline_at=now)
            session.add(job)
            await session.commit()
        # The message was released at its deadline; the verdict comes after delivery.
        await SandboxService(services, []).finish(job.id, Report(MALICIOUS, "dropper"))
        report = await Retroscan(settings, store).run_pending()
    finally:
        await services.close()
    assert report.pulled == 1
    assert (await statuses(store))["S1/sam@example.com"] == "retracted"


async def test_linked_forwards_are_pulled_with_their_original_hops_deep(world):
    settings, store, maildir = world
    settings.trap.forward_hops = 2
    await deliver(settings, store, maildir, "FO", ["ann@example.com"],
                  urls=["https://fw.kit.example/x"])
    chain = [("F1", "FO", "ann@example.com", "ben@example.com"),
             ("F2", "F1", "ben@example.com", "cat@example.com"),
             ("F3", "F2", "cat@example.com", "dan@example.com")]
    for queue_id, original, forwarder, to in chain:
        await deliver(settings, store, maildir, queue_id, [to], sender=forwarder)
        async with store.session() as session:
            session.add(ForwardLink(queue_id=queue_id, original_queue_id=original,
                                    forwarder=forwarder, matched_by="subject",
                                    linked_at=datetime.now(UTC)))
            await session.commit()
    # A forward loop ends at the first repeat.
    async with store.session() as session:
        session.add(ForwardLink(queue_id="FO", original_queue_id="F1", forwarder="x@y",
                                matched_by="subject", linked_at=datetime.now(UTC)))
        await session.commit()
    report = await Retroscan(settings, store).scan([Indicator("domain", "kit.example",
                                                              "phish")])
    assert report.pulled == 3
    assert await statuses(store) == {"FO/ann@example.com": "retracted",
                                     "F1/ben@example.com": "retracted",
                                     "F2/cat@example.com": "retracted",
                                     "F3/dan@example.com": "delivered"}
    async with store.session() as session:
        incident = await session.scalar(select(Incident))
        detail = await workflow.assess(session, incident)
    assert {c["recipient"]: c["matched_on"] for c in detail["copies"]} == {
        "ann@example.com": "url domain", "ben@example.com": "forward of FO",
        "cat@example.com": "forward of F1"}

    settings.trap.follow_forwards = False
    await deliver(settings, store, maildir, "GO", ["eve@example.com"],
                  urls=["https://other.kit2.example/x"])
    await deliver(settings, store, maildir, "G1", ["fay@example.com"], sender="eve@example.com")
    async with store.session() as session:
        session.add(ForwardLink(queue_id="G1", original_queue_id="GO", forwarder="eve@x",
                                matched_by="subject", linked_at=datetime.now(UTC)))
        await session.commit()
    assert (await Retroscan(settings, store).scan(
        [Indicator("domain", "kit2.example", "phish")])).pulled == 1
