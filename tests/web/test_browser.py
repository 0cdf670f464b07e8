"""The console in a real headless Chromium (Debian's), driven by Playwright.

Each test leaves a screenshot of the page it checks under
``test-artifacts/screenshots/`` for people to look at.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.gateway import ROOT, SHARED, crlf
from tests.web.conftest import start_console
from tests.web.support import PASSWORD, Console, api_user, corpus_spam, queue_id

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
LINK_LIFETIME = 20.0


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """site - a console where all outside mail is held (reason: policy)."""
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    from tests.support.sink import SmtpSink

    sink = SmtpSink().start()
    gateway = start_console(tmp_path_factory.mktemp("browser"), sink, quarantine_external=True,
                            accepted_domains=["example.com"],
                            digest_link_lifetime=f"{LINK_LIFETIME:g}s")
    yield gateway, sink
    gateway.stop()
    sink.stop()


@pytest.fixture(scope="module")
def chromium():
    need(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "Playwright for Python")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page_as(site, chromium):
    """page_as - a fresh browser context logged in (through the form) as a user."""
    gateway, _ = site
    contexts = []

    def make(username: str | None):
        context = chromium.new_context(base_url=gateway.web_url,
                                       viewport={"width": 1360, "height": 900})
        contexts.append(context)
        page = context.new_page()
        if username:
            page.goto("/login")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/console/quarantine$"))
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def wait_relayed(sink, qid: str) -> bytes:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for message in sink.messages:
            if f"X-Mailward-Queue-Id: {qid}".encode() in message.data:
                return message.data
        time.sleep(0.1)
    raise AssertionError(f"{qid} never reached the relay")


def test_login_page(page_as):
    page = page_as(None)
    page.goto("/console/quarantine")
    assert "/login" in page.url
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong password given")
    page.click("button[type=submit]")
    assert "wrong user name or password" in page.inner_text("p.error")
    shot(page, "login")


def test_admin_reviews_the_rtlo_attachment_and_releases_it(site, page_as):
    gateway, sink = site
    raw = SHARED / "cases" / "C31_rtlo_filename.eml"
    qid = queue_id(gateway.send(crlf(raw.read_bytes()), mail_from="dana.reyes@example.org",
                                rcpts=["alice@example.com"]))
    page = page_as("admin")
    shot(page, "quarantine-list")
    page.click("text=signed contract")
    page.wait_for_selector("td.filename")
    filename = page.inner_text("td.filename")
    assert filename == "contract<U+202E>fdp.exe"
    assert "\u202e" not in page.content()
    assert "EXTERNAL_SENDER" in page.inner_text("table.findings")
    shot(page, "quarantine-message")
    page.click("button[data-action=release]")
    page.wait_for_selector("p.notice")
    assert "released" in page.inner_text("#status")
    delivered = wait_relayed(sink, qid)
    assert b"X-Mailward-Released: by user:admin" in delivered


def test_user_sees_only_their_own_quarantine_even_by_url(site, page_as):
    gateway, _ = site
    mine = queue_id(gateway.send(corpus_spam(10), rcpts=["alice@example.com"]))
    theirs = queue_id(gateway.send(corpus_spam(11), rcpts=["bob@example.com"]))
    admin = Console(gateway)
    admin.login("admin")
    their_item = admin.item_of(theirs)
    my_item = admin.item_of(mine)
    admin.close()
    page = page_as("alice")
    listed = page.inner_text("table.list")
    assert my_item["subject"][:30].strip() in listed or my_item["id"] in page.content()
    assert their_item["id"] not in page.content()
    shot(page, "quarantine-user")
    response = page.goto(f"/console/quarantine/{their_item['id']}")
    assert response.status == 404
    assert "no quarantined message" in page.inner_text("p.error")
    shot(page, "quarantine-other-users-message-refused")
    assert page.goto(f"/console/trace/{theirs}").status == 403


def test_trace_search_and_decision_page(site, page_as):
    gateway, _ = site
    qid = queue_id(gateway.send(
        b"From: Sam <sam@partner.example.org>\r\nTo: bob@example.com\r\n"
        b"Subject: quarterly figures\r\nMessage-ID: <q4@partner.example.org>\r\n\r\nSee you.\r\n",
        rcpts=["bob@example.com"]))
    page = page_as("analyst")
    page.goto("/console/trace")
    page.fill("input[name=subject]", "quarterly")
    page.click("text=Search")
    page.click(f"text={qid}")
    page.wait_for_selector("table.findings")
    assert qid in page.inner_text("dl.facts")
    assert "EXTERNAL_SENDER" in page.inner_text("table.findings")
    assert "forces quarantine" in page.inner_text("dd.reason")
    shot(page, "trace-message")
    page.goto("/console/trace?sender=partner.example.org")
    shot(page, "trace-search")


def test_dashboard_draws_charts_from_the_local_library(site, page_as):
    page = page_as("analyst")
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto("/console/dashboard")
    page.wait_for_function("() => window.Chart && Chart.getChart('flow-chart')")
    assert page.evaluate("() => Chart.getChart('flow-chart').data.datasets.length") == 4
    assert all(url.startswith(page.url.split('/console')[0]) for url in requests)
    shot(page, "dashboard-mail-flow")


def test_incident_and_threat_pages(site, page_as):
    page = page_as("analyst")
    for name in ("incidents", "threats", "reports"):
        page.goto(f"/console/panels/{name}")
        assert page.inner_text("h1").lower() == name
        shot(page, f"dashboard-{name}")


def test_analyst_opens_an_incident_and_moves_it_on(site, page_as):
    gateway, sink = site
    url = "https://invoices.incident-browser.example.net/pay/4471"
    raw = crlf(("From: Accounts <accounts@supplier.example.org>\nTo: bob@example.com\n"
                "Subject: Invoice 4471 to pay\nMessage-ID: <incident-browser@supplier.example.org>\n"
                f"\nPlease pay the open invoice at {url} today.\n").encode())
    qid = queue_id(gateway.send(raw, mail_from="accounts@supplier.example.org",
                                rcpts=["bob@example.com"]))
    admin = Console(gateway)
    assert admin.login("admin").status_code == 200
    released = admin.post(f"/api/v1/quarantine/{admin.item_of(qid)['id']}/release")
    assert released.status_code == 200, released.text
    wait_relayed(sink, qid)
    added = admin.post("/api/v1/trap/indicators", json={"indicators": [
        {"type": "url", "value": url, "category": "phish", "source": "browser-test"}]})
    assert added.status_code == 200, added.text
    deadline, found = time.monotonic() + 30, []
    while not found and time.monotonic() < deadline:
        found = [i for i in admin.get("/api/v1/trap/incidents").json()
                 if i["indicator"]["value"] == url]
        time.sleep(0.2)
    admin.close()
    assert found, "no incident was opened for the new indicator"
    incident = found[0]["id"]
    page = page_as("analyst")
    page.goto("/console/panels/incidents")
    page.click(f"a[href='/console/incidents/{incident}']")
    page.wait_for_selector("table.copies")
    assert "bob@example.com" in page.inner_text("table.copies")
    assert "Found by" in page.inner_text("table.copies thead")
    assert url in page.inner_text("dl.facts")
    shot(page, "incident")
    page.select_option("form.workflow select[name=status]", "investigating")
    page.click("form.workflow button")
    page.wait_for_selector("p.notice")
    assert page.inner_text("dd.status").startswith("investigating")
    page.select_option("form.workflow select[name=status]", "closed")
    page.click("form.workflow button")  # closing needs a note
    assert "needs a note" in page.content()
    user = page_as("bob")
    answer = user.goto(f"/console/incidents/{incident}")
    assert answer.status == 403


def test_bulk_release_of_selected_messages(site, page_as):
    gateway, sink = site
    qids = [queue_id(gateway.send(corpus_spam(n), rcpts=["bob@example.com"])) for n in (12, 13)]
    page = page_as("bob")
    page.check("#select-all")
    page.select_option("select[name=action]", "release")
    page.click(".bulk button")
    page.wait_for_selector("table.list")
    assert page.inner_text("table.list").count("done") >= 2
    shot(page, "quarantine-bulk-results")
    for qid in qids:
        wait_relayed(sink, qid)


def test_digest_link_works_once_and_not_after_expiry(site, page_as):
    gateway, sink = site
    api_user(gateway, "jill", "user", "jill@example.com", digest="daily")
    qid = queue_id(gateway.send(corpus_spam(14), rcpts=["jill@example.com"]))
    admin = Console(gateway)
    admin.login("admin")
    assert admin.post("/api/v1/digest/run").json()["sent"] >= 1
    sent_at = time.monotonic()
    admin.close()
    deadline = time.monotonic() + 20
    body = b""
    while time.monotonic() < deadline and not body:
        body = next((m.data for m in sink.messages if m.rcpt_tos == ["jill@example.com"]
                     and b"Quarantine digest" in m.data), b"")
        time.sleep(0.1)
    import email
    import email.policy

    text = email.message_from_bytes(body, policy=email.policy.default).get_content()
    release = re.search(r"Release: (\S+)", text).group(1)
    block = re.search(r"Block sender: (\S+)", text).group(1)
    page = page_as(None)
    page.goto(release)
    shot(page, "digest-confirm")
    page.click("#confirm")
    page.wait_for_selector("#link-done")
    shot(page, "digest-done")
    wait_relayed(sink, qid)
    page.goto(release)
    assert "already used" in page.inner_text("#link-error")
    time.sleep(max(0.0, LINK_LIFETIME + 0.5 - (time.monotonic() - sent_at)))
    page.goto(block)
    assert "expired" in page.inner_text("#link-error")
    shot(page, "digest-expired")
