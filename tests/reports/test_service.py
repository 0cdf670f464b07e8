"""The report service in process, on SQLite and PostgreSQL: intake, matching through
the index, clustering, verdicts and actions; tokens and outcome texts."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from mailward.config import load_settings
from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.reports.intake import IntakeError, read_submission
from mailward.reports.notify import Notifier
from mailward.reports.service import SubmitError, service_of
from mailward.reports.tokens import link_token, reporter_token, verify_link, verify_reporter
from mailward.store.models import Copy, ReportCluster, UserReport
from tests.reports.support import CAMPAIGN_URL, campaign_message, forward_as_attachment

KEY = b"k" * 32


@pytest.fixture
async def gateway(tmp_path, database_url):
    settings = load_settings(overrides={
        "storage.data_dir": str(tmp_path / "data"), "storage.database_url": database_url,
        "smtp.accepted_domains": ["example.com"], "smtp.hostname": "mx.test.example",
        "reports.notify": False, "dns.timeout": "0.2s"})
    instance = Gateway(settings)
    await instance.start()
    yield instance
    await instance.close()


async def deliver(gateway: Gateway, raw: bytes, recipients: list[str],
                  sender: str = "helpdesk@evil-helpdesk.test") -> str:
    envelope = Envelope(queue_id=new_queue_id(), mail_from=sender, rcpt_to=recipients,
                        peer_ip="198.51.100.7", helo="mail.example.net")
    assert (await gateway.receive(envelope, raw)).code == 250
    while await gateway.queue.run_once():
        pass
    return envelope.queue_id


async def folders(gateway: Gateway, queue_id: str) -> dict[str, str]:
    async with gateway.services.store.session() as session:
        rows = (await session.scalars(select(Copy).where(Copy.queue_id == queue_id))).all()
    return {row.recipient: row.folder for row in rows}


async def test_inline_forward_that_lost_its_headers_is_matched_through_the_index(gateway):
    people = ["amy@example.com", "ben@example.com"]
    queue_id = await deliver(gateway, campaign_message(subject="Action required: payroll"),
                             people)
    await gateway.services.intel.add("url", CAMPAIGN_URL, source="test")
    inline = (b"From: amy@example.com\r\nTo: report@example.com\r\n"
              b"Subject: FW: Action required: payroll\r\n\r\nLooks odd.\r\n\r\n"
              b"-----Original Message-----\r\nFrom: IT Helpdesk <helpdesk@evil-helpdesk.test>\r\n"
              b"Subject: Action required: payroll\r\n\r\nYour mailbox has reached its limit.\r\n")
    service = service_of(gateway)
    taken = await service.submit(people[0], "mailbox", raw=inline, wrapped=True)
    assert taken.queue_id == queue_id and taken.matched_by == "subject"
    await service.drain()
    assert await folders(gateway, queue_id) == {p: "Quarantine" for p in people}
    async with gateway.services.store.session() as session:
        cluster = await session.get(ReportCluster, taken.cluster_id)
    assert cluster.verdict == "malicious" and cluster.confidence == 1.0
    assert ["url", CAMPAIGN_URL] in cluster.evidence["indicators"]


async def test_look_alikes_from_other_transactions_form_one_campaign_decided_once(gateway):
    first = await deliver(gateway, campaign_message(subject="Parcel held at depot"),
                          ["cat@example.com"])
    second = await deliver(gateway, campaign_message(subject="RE: Parcel held at depot"),
                           ["dan@example.com", "eve@example.com"])
    await gateway.services.intel.add("url", CAMPAIGN_URL, source="test")
    service = service_of(gateway)
    one = await service.submit("cat@example.com", "api", queue_id=first)
    two = await service.submit("dan@example.com", "api", queue_id=second)
    await service.drain()
    assert one.cluster_id == two.cluster_id
    assert set((await folders(gateway, second)).values()) == {"Quarantine"}
    again = await service.submit("cat@example.com", "api", queue_id=first)
    assert again.duplicate and again.report_id == one.report_id


async def test_nothing_is_acted_on_without_a_match(gateway):
    queue_id = await deliver(gateway, campaign_message(subject="Unrelated"), ["fay@example.com"])
    service = service_of(gateway)
    with pytest.raises(SubmitError) as refused:
        await service.submit("gus@example.com", "api", queue_id=queue_id)
    assert refused.value.status == 404 and "never delivered" in refused.value.text
    with pytest.raises(SubmitError) as refused:
        await service.submit("fay@example.com", "api", raw=b"x" * 64, wrapped=True)
    assert refused.value.status == 404 and "no original" in refused.value.text
    async with gateway.services.store.session() as session:
        statuses = (await session.scalars(select(UserReport.status))).all()
        clusters = (await session.scalars(select(ReportCluster))).all()
    assert statuses == ["unmatched", "unmatched"] and clusters == []
    assert await folders(gateway, queue_id) == {"fay@example.com": "INBOX"}


def test_forwards_nested_past_the_limit_are_not_opened():
    message = campaign_message()
    for depth in range(5):
        message = forward_as_attachment(message, "a@example.com", "b@example.com",
                                        subject=f"Fwd {depth}")
    intake = read_submission(message, 3, wrapped=True)
    assert intake.problems and "deeper than 3" in intake.problems[0]
    assert all(c.depth <= 3 for c in intake.candidates)
    with pytest.raises(IntakeError):
        read_submission(b"Subject: hi\r\n\r\nno original here\r\n", 3, wrapped=True)


def test_reporter_tokens_and_report_links_are_signed():
    token = reporter_token(KEY, "Alice@Example.com")
    assert verify_reporter(KEY, token) == "alice@example.com"
    assert verify_reporter(b"x" * 32, token) is None
    assert verify_reporter(KEY, token[:-2] + "zz") is None
    assert verify_reporter(KEY, "mwr1." + "A" * 5000) is None
    assert verify_reporter(KEY, "mwr1.\u202e.0.x") is None
    expired = reporter_token(KEY, "a@example.com", lifetime=10, now=time.time() - 100)
    assert verify_reporter(KEY, expired) is None
    link = link_token(KEY, "02q4abc", "bob@example.com")
    assert verify_link(KEY, link).queue_id == "02q4abc"
    assert verify_link(KEY, link.replace("02q4abc", "02q4abd")) is None
    assert verify_link(KEY, "../../etc/passwd") is None


async def test_outcome_texts_in_three_languages_show_hidden_characters(gateway):
    notifier = Notifier(gateway)
    # An RTLO in the reported subject (a filename-style spoof) is shown, not obeyed.
    context = {"subject": "Invoice \u202efdp.exe", "sender": "a@evil-helpdesk.test",
               "category": "malware", "copies": 3, "reasons": ["a URL is known bad"]}
    subject, body = notifier.render("x@example.com", "malicious", context)
    assert "dangerous" in subject and "<U+202E>" in body and "\u202e" not in body
    assert "2 other mailboxes" in body and "malware" in body
    gateway.settings.reports.languages = {"@example.de": "de", "fr@example.com": "fr"}
    assert notifier.render("y@example.de", "spam", context)[0].startswith("Danke")
    assert notifier.render("fr@example.com", "clean", context)[0].startswith("Merci")
    gateway.settings.reports.languages = {"z@example.com": "xx"}
    assert notifier.render("z@example.com", "simulation", context)[0].startswith("Well")


def test_shipped_clients_are_well_formed():
    import json
    import xml.etree.ElementTree as ElementTree
    from importlib import resources

    clients = resources.files("mailward.reports").joinpath("clients")
    manifest = ElementTree.fromstring(clients.joinpath("outlook", "manifest.xml").read_bytes())
    assert manifest.tag.endswith("OfficeApp")
    names = {e.get("DefaultValue") for e in manifest.iter() if e.get("DefaultValue")}
    assert "{{PUBLIC_URL}}/report-clients/outlook/commands.html" in names
    extension = json.loads(clients.joinpath("webextension", "manifest.json").read_text())
    assert extension["manifest_version"] == 3
    assert "/api/v1/reports" in clients.joinpath("webextension", "report.js").read_text()


async def test_reporting_address_among_other_recipients_takes_the_report_and_delivers(
        gateway):
    gateway.settings.reports.address = "report@example.com"
    service = service_of(gateway)
    gateway.intakes.append(service.receive_mail)
    queue_id = await deliver(gateway, campaign_message(subject="Mixed recipients test"),
                             ["hal@example.com"])
    async with gateway.services.store.session() as session:
        native = await session.scalar(select(Copy.native_id).where(Copy.queue_id == queue_id))
    copy = next((gateway.settings.data_dir / "mailboxes/example.com/hal").rglob(f"{native}*"))
    forward = forward_as_attachment(copy.read_bytes(), "hal@example.com", "report@example.com")

    # From outside the organisation's servers a report by mail is refused.
    outside = Envelope(queue_id=new_queue_id(), mail_from="hal@example.com",
                       rcpt_to=["report@example.com"], peer_ip="203.0.113.9")
    reply = await gateway.receive(outside, forward)
    assert reply.code == 550 and "own mail servers" in reply.text

    inside = Envelope(queue_id=new_queue_id(), mail_from="hal@example.com",
                      rcpt_to=["report@example.com", "ida@example.com"], peer_ip="127.0.0.1")
    reply = await gateway.receive(inside, forward)
    assert reply.code == 250 and inside.rcpt_to == ["ida@example.com"]
    while await gateway.queue.run_once():
        pass
    # Delivered to the other recipient only (the forwarded phish may be judged spam: Junk).
    delivered = await folders(gateway, inside.queue_id)
    assert list(delivered) == ["ida@example.com"] and delivered["ida@example.com"] in (
        "INBOX", "Junk")
    async with gateway.services.store.session() as session:
        reports = (await session.scalars(select(UserReport))).all()
    assert [(r.reporter, r.source, r.queue_id) for r in reports] == \
        [("hal@example.com", "mailbox", queue_id)]
    await service.drain()
