"""Ways to report and bad input: the banner link, ARF, forwards of forwards, floods,
forged tokens, reports with no original or of mail never delivered; own phishing
simulations; the analyst queue and overrides by REST and by the command line."""

from __future__ import annotations

import email
import re
from email.message import EmailMessage
from email.policy import SMTP

import httpx
import pytest

from tests.conftest import need
from tests.reports.support import (
    CAMPAIGN_URL,
    api,
    campaign_message,
    corpus,
    delivered,
    folder_files,
    forward_as_attachment,
    scores_file,
    wait_until,
)
from tests.support.gateway import SHARED, RunningGateway
from tests.support.sink import SmtpSink

REPORTING = "report-phish@example.com"
PER_REPORTER = 6


@pytest.fixture(scope="module")
def sink():
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, sink):
    """gateway - every external message tagged (a banner with the report link)."""
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    directory = tmp_path_factory.mktemp("intake")
    scores = scores_file(directory / "scores.toml", tag=6.0, quarantine=15.0, tag_external=True)
    config = {"smtp": {"accepted_domains": ["example.com"]},
              "policy": {"scores_file": str(scores)},
              "reports": {"address": REPORTING, "notify_relay": sink.url,
                          "min_confidence": 0.99, "per_reporter": f"{PER_REPORTER}/1h",
                          "simulation_senders": ["@phishtest.example.org"]},
              # The post-delivery response leaves phishing to the reports here.
              "trap": {"pull_phish": "never"}}
    running = RunningGateway(directory, config).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(gateway):
    with api(gateway, gateway.token("reports-tests")) as client:
        yield client


def token_for(admin: httpx.Client, address: str) -> str:
    answer = admin.post("/api/v1/reports/tokens", json={"address": address})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def report_raw(gateway, token: str, raw: bytes, **params) -> httpx.Response:
    return httpx.post(f"{gateway.web_url}/api/v1/reports", content=raw, params=params,
                      headers={"Authorization": f"Bearer {token}",
                               "Content-Type": "message/rfc822"}, timeout=30)


def smtp_report(gateway, sender: str, raw: bytes) -> tuple[int, str]:
    with gateway.smtp() as client:
        client.mail(sender)
        client.rcpt(REPORTING)
        code, text = client.data(raw)
    return code, text.decode()


def reports_of(admin: httpx.Client, reporter: str) -> list[dict]:
    rows = admin.get("/api/v1/reports", params={"limit": 500}).json()["reports"]
    return [r for r in rows if r["reporter"] == reporter]


def mails_to(sink: SmtpSink, address: str) -> list[bytes]:
    return [m.data for m in sink.messages if address in m.rcpt_tos]


def campaign_url(subject: str) -> str:
    return f"{CAMPAIGN_URL}&c={abs(hash(subject))}"


def campaign(gateway, people: list[str], subject: str, listed: bool = False) -> dict:
    """campaign - a phish delivered to people; with listed, its link is known bad since."""
    url = campaign_url(subject)
    # Each campaign has its own sender: a malicious verdict blocks the sender it names.
    sender = f"helpdesk{abs(hash(subject)) % 10000}@evil-helpdesk.test"
    gateway.send(campaign_message(subject=subject, url=url, sender=sender),
                 mail_from=sender, rcpts=people)
    copies = delivered(gateway, people)
    if listed:
        gateway.cli("intel", "add", "--type", "url", url, "--source", "feed")
    return copies


def test_banner_link_reports_without_login_and_only_on_the_button(gateway, admin, sink):
    person = "gina@example.com"
    gateway.send(corpus("ham", 8), mail_from="list@lists.example.org", rcpts=[person])
    copy = delivered(gateway, [person])[person]
    text = email.message_from_bytes(copy.read_bytes(), policy=SMTP).get_body(
        ("plain",)).get_content()
    link = re.search(r"Report phishing: (\S+)", text).group(1)
    assert link.startswith(f"{gateway.web_url}/report/")

    # Opening the link (as a link scanner would) reports nothing.
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200 and "Report phishing" in page.text
    assert not reports_of(admin, person)
    forged = httpx.post(link[:-3] + "AAA", timeout=30)
    assert forged.status_code == 404 and "not a valid report link" in forged.text
    assert not reports_of(admin, person)

    answer = httpx.post(link, timeout=30)
    assert answer.status_code == 202 and "Thank you" in answer.text
    assert [r["source"] for r in reports_of(admin, person)] == ["link"]
    wait_until(lambda: mails_to(sink, person), what="the thanks", log=gateway.log)
    assert b"looks safe" in mails_to(sink, person)[0]
    assert folder_files(gateway, person, "INBOX")


def test_forged_or_altered_reporter_token_is_refused_and_nothing_recorded(gateway, admin):
    person = "hana@example.com"
    copy = campaign(gateway, [person], "Invoice overdue")[person]
    token = token_for(admin, person)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    answer = report_raw(gateway, forged, copy.read_bytes())
    assert answer.status_code == 401 and "not valid" in answer.json()["detail"]
    other = token_for(admin, "someone@example.com")
    answer = report_raw(gateway, other, copy.read_bytes())
    assert answer.status_code == 404 and "never delivered" in answer.json()["detail"]
    assert not reports_of(admin, person)
    assert folder_files(gateway, person, "INBOX"), "nothing may move without a match"


def test_report_without_original_or_of_mail_never_delivered_gets_a_clear_answer(
        gateway, admin):
    person = "ivan@example.com"
    bare = (f"From: {person}\r\nTo: {REPORTING}\r\nSubject: phishing!\r\n\r\n"
            f"I got a weird mail, please check.\r\n").encode()
    code, text = smtp_report(gateway, person, bare)
    assert code == 550 and "no original message found" in text
    token = token_for(admin, person)
    answer = httpx.post(f"{gateway.web_url}/api/v1/reports", json={},
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 422 and "no original message" in answer.json()["detail"]
    never = campaign_message(subject="Never sent through mailward", to=person)
    answer = report_raw(gateway, token, never)
    assert answer.status_code == 404 and "never delivered" in answer.json()["detail"]
    broken = b"\x00\xff not a message at all \r\n" * 10
    answer = report_raw(gateway, token, broken)
    assert answer.status_code == 404
    assert [r["status"] for r in reports_of(admin, person)] == ["unmatched"] * 3


def test_forward_of_a_forward_is_matched_to_the_reporters_own_copy(gateway, admin):
    first, second = "jack@example.com", "kate@example.com"
    copy = campaign(gateway, [first], "Shared document waiting")[first]
    # Jack forwards the phish to Kate as an attachment; Kate reports what she got.
    gateway.send(forward_as_attachment(copy.read_bytes(), first, second,
                                       subject="Fwd: is this real?"),
                 mail_from=first, rcpts=[second])
    # A forwarded phish may be tagged as spam itself: Kate's copy is in her inbox or junk.
    [kates] = wait_until(lambda: folder_files(gateway, second, "INBOX")
                         + folder_files(gateway, second, "Junk"),
                         what="Kate's copy delivered", log=gateway.log)
    gateway.cli("intel", "add", "--type", "url", campaign_url("Shared document waiting"),
                "--source", "feed")
    code, text = smtp_report(gateway, second,
                             forward_as_attachment(kates.read_bytes(), second, REPORTING))
    assert code == 250, text
    rows = reports_of(admin, second)
    assert len(rows) == 1 and rows[0]["source"] == "mailbox"
    kate_queue_id = re.search(rb"X-Mailward-Queue-Id: (\S+)", kates.read_bytes()).group(1)
    assert rows[0]["queue_id"] == kate_queue_id.decode()
    wait_until(lambda: folder_files(gateway, second, "Quarantine"),
               what="Kate's copy retracted", log=gateway.log)
    # Jack's own copy of the phish carries the same bad link: a malicious verdict reaches it.
    wait_until(lambda: folder_files(gateway, first, "Quarantine"),
               what="Jack's copy retracted too", log=gateway.log)


def arf(reporter: str, original: bytes | None, headers_only: bool = False,
        complete: bool = True) -> bytes:
    """arf - an RFC 5965 feedback report about original."""
    report = EmailMessage(policy=SMTP)
    report["From"] = reporter
    report["To"] = REPORTING
    report["Subject"] = "Abuse report"
    report.set_content("This is an abuse report for a message received.\n")
    report.make_mixed()
    fields = "Feedback-Type: abuse\r\nUser-Agent: TestClient/1.0\r\nVersion: 1\r\n" \
        if complete else "Feedback-Type: abuse\r\n"
    part = EmailMessage(policy=SMTP)
    part["Content-Type"] = "message/feedback-report"
    part.set_payload(fields)
    report.attach(part)
    if original is not None and headers_only:
        head = original.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        headers = EmailMessage(policy=SMTP)
        headers["Content-Type"] = "text/rfc822-headers"
        headers.set_payload(head.decode())
        report.attach(headers)
    elif original is not None:
        report.add_attachment(email.message_from_bytes(original, policy=SMTP))
    raw = report.as_bytes()
    return raw.replace(b"Content-Type: multipart/mixed;",
                       b"Content-Type: multipart/report; report-type=feedback-report;", 1)


def test_arf_reports_whole_headers_only_and_broken(gateway, admin, sink):
    people = ["leo@example.com", "mia@example.com", "ned@example.com"]
    copies = campaign(gateway, people, "Payroll update required", listed=True)
    code, text = smtp_report(gateway, people[0], arf(people[0], copies[people[0]].read_bytes()))
    assert code == 250, text
    code, text = smtp_report(gateway, people[1], arf(people[1], copies[people[1]].read_bytes(),
                                                     headers_only=True))
    assert code == 250, text
    # A report whose feedback part is incomplete is still taken, and says what was missing.
    code, text = smtp_report(gateway, people[2], arf(people[2], copies[people[2]].read_bytes(),
                                                     complete=False))
    assert code == 250, text
    assert "lacks its user-agent" in reports_of(admin, people[2])[0]["note"]
    code, text = smtp_report(gateway, people[2], arf(people[2], None))
    assert code == 550 and "carries neither" in text
    sources = {r["reporter"]: r for p in people for r in reports_of(admin, p)
               if r["status"] != "unmatched"}
    assert {r["source"] for r in sources.values()} == {"arf"}
    assert len({r["cluster"] for r in sources.values()}) == 1, "one campaign"
    for person in people:
        wait_until(lambda p=person: folder_files(gateway, p, "Quarantine"),
                   what=f"{person} retracted", log=gateway.log)
    wait_until(lambda: all(mails_to(sink, p) for p in people), what="three outcomes",
               log=gateway.log)


def test_a_flood_from_one_reporter_is_rate_limited(gateway, admin):
    person = "olga@example.com"
    raw = campaign(gateway, [person], "Password expires today")[person].read_bytes()
    token = token_for(admin, person)
    codes = [report_raw(gateway, token, raw).status_code for _ in range(PER_REPORTER + 1)]
    assert codes[:PER_REPORTER] == [202] * PER_REPORTER and codes[-1] == 429
    assert len(reports_of(admin, person)) == 1, "repeats of one report are one report"
    code, text = smtp_report(gateway, person, forward_as_attachment(raw, person, REPORTING))
    assert code == 450 and "too many reports" in text


def test_own_phishing_simulation_is_recognised_and_never_retracted(gateway, admin, sink):
    person = "paul@example.com"
    gateway.send(campaign_message(subject="Quarterly bonus", sender="hr@phishtest.example.org",
                                  url="https://phishtest.example.org/t/42"),
                 mail_from="hr@phishtest.example.org", rcpts=[person])
    copy = delivered(gateway, [person])[person]
    answer = report_raw(gateway, token_for(admin, person), copy.read_bytes())
    assert answer.status_code == 202, answer.text
    wait_until(lambda: mails_to(sink, person), what="the simulation outcome", log=gateway.log)
    assert b"phishing simulation" in mails_to(sink, person)[0]
    cluster = admin.get(f"/api/v1/reports/clusters/{answer.json()['cluster']}").json()
    assert cluster["verdict"] == "simulation" and cluster["simulation"]
    assert folder_files(gateway, person, "INBOX") and \
        not folder_files(gateway, person, "Quarantine")


# Two social-engineering cues (urgency, a payment request) and no link: the
# rules give it a small phishing score whatever the spam model says, so a
# report of it is neither clearly clean nor clearly malicious.
UNSURE = (b"From: Accounts Team <accounts@products.example.org>\r\n"
          b"To: rita@example.com\r\nSubject: Urgent: invoice 4471 overdue\r\n"
          b"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
          b"Message-ID: <inv4471@products.example.org>\r\n\r\n"
          b"Hello,\r\n\r\nour records show invoice 4471 is overdue. Please confirm "
          b"your payment details today\r\nto avoid suspension of your account. This "
          b"is your final notice.\r\n\r\nAccounts Team\r\n")


def test_unsure_verdict_waits_for_an_analyst_whose_override_is_applied(gateway, admin, sink):
    person = "rita@example.com"
    gateway.send(UNSURE, mail_from="news@products.example.org", rcpts=[person])
    folder = wait_until(lambda: next((f for f in ("INBOX", "Junk")
                                      if folder_files(gateway, person, f)), None),
                        what="delivery", log=gateway.log)
    copy = folder_files(gateway, person, folder)[0]
    answer = report_raw(gateway, token_for(admin, person), copy.read_bytes())
    assert answer.status_code == 202, answer.text
    cluster_id = answer.json()["cluster"]

    def waiting():
        rows = admin.get("/api/v1/reports/clusters", params={"status": "analyst"}).json()
        return [c for c in rows["clusters"] if c["id"] == cluster_id]

    queued = wait_until(waiting, what="the analyst queue", log=gateway.log)[0]
    assert queued["confidence"] < 0.99
    assert not mails_to(sink, person) and folder_files(gateway, person, folder)

    # An analyst says malicious (REST): the copy is retracted and the reporter told.
    decided = admin.post(f"/api/v1/reports/clusters/{cluster_id}/verdict",
                         json={"verdict": "malicious", "category": "phish"})
    assert decided.status_code == 200, decided.text
    assert folder_files(gateway, person, "Quarantine")
    wait_until(lambda: mails_to(sink, person), what="the outcome", log=gateway.log)
    assert b"dangerous" in mails_to(sink, person)[0]

    # Then changes their mind on the command line: back to the inbox, reporter told again.
    result = gateway.cli("reports", "override", str(cluster_id), "clean")
    assert b"malicious -> clean" in result.stdout
    assert folder_files(gateway, person, "INBOX") and \
        not folder_files(gateway, person, "Quarantine")
    wait_until(lambda: len(mails_to(sink, person)) >= 2, what="the second outcome",
               log=gateway.log)
    assert b"looks safe" in mails_to(sink, person)[-1]
    refused = admin.post(f"/api/v1/reports/clusters/{cluster_id}/verdict",
                         json={"verdict": "harmless"})
    assert refused.status_code == 422


def test_figures_dashboard_and_trace_show_the_reports(gateway, admin):
    figures = admin.get("/api/v1/reports/stats").json()
    assert figures["organisation"]["reports"] >= 5
    assert any(r["reporter"] == "leo@example.com" and r["accuracy"] == 1.0
               for r in figures["reporters"])
    assert admin.get("/api/v1/reports/stats",
                     params={"since": "2026-12-04T00:00:00", "until": "2026-12-03T00:00:00"}
                     ).status_code == 422
    panel = admin.get("/api/v1/stats/panels/reports")
    assert panel.status_code == 200 and "organisation" in panel.json()
    row = reports_of(admin, "leo@example.com")[0]
    trace = admin.get(f"/api/v1/trace/{row['queue_id']}").json()
    section = [s for s in trace["sections"] if s["title"] == "User reports"][0]
    assert {r["kind"] for r in section["rows"]} == {"report", "action"}
    text = gateway.cli("reports", "stats", "--since", "1d").stdout.decode()
    assert "leo@example.com" in text and "report rate" in text
    manifest = httpx.get(f"{gateway.web_url}/report-clients/outlook/manifest.xml", timeout=30)
    assert manifest.status_code == 200 and gateway.web_url in manifest.text
