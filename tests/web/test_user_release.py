"""Which held mail end users may release themselves (web.user_release)."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from email.message import EmailMessage

import pytest

from tests.conftest import need
from tests.support.gateway import SHARED
from tests.web.conftest import start_console
from tests.web.support import Console, add_user, corpus_spam, phish, queue_id

OLETOOLS = SHARED / "corpus/malware/oletools-test-data"
from tests.web.test_digest import links, wait_digest


def impostor(to: str) -> bytes:
    """impostor - a wire-transfer request from a look-alike of the accepted domain."""
    return (f"From: Carol Jones <carol.jones@examp1e.com>\r\nTo: {to}\r\n"
            "Reply-To: carol.jones.ceo@gmail.com\r\nSubject: Urgent wire transfer\r\n"
            "Message-ID: <wire-1@examp1e.com>\r\n\r\n"
            "I need you to process an urgent wire transfer of $48,500 to a new vendor\r\n"
            "today. Keep this confidential until the deal is announced. Send me the\r\n"
            "confirmation once the payment is done; I am in meetings all day.\r\n").encode()


def with_document(relative: str, to: str, subject: str, spam: bool) -> bytes:
    """with_document - a corpus document attached to a corpus spam or a plain note."""
    message = EmailMessage()
    message["From"] = "Dana Field <dana@partner.example.org>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{abs(hash(subject))}@partner.example.org>"
    if spam:
        original = email.message_from_bytes(corpus_spam(1), policy=email.policy.default)
        part = original.get_body(("plain", "html")) or original
        # Old spam names charsets Python does not know: its bytes are read as Latin-1.
        message.set_content((part.get_payload(decode=True) or b"").decode("latin-1"))
    else:
        message.set_content("Hi Bob,\n\nthe figures for the quarterly review are in "
                            "the attached file.\n\nBest regards,\nDana\n")
    path = OLETOOLS / relative
    message.add_attachment(path.read_bytes(), maintype="application",
                           subtype="octet-stream", filename=path.name)
    return message.as_bytes(policy=email.policy.SMTP)


@pytest.fixture(scope="module")
def site(tmp_path_factory, sink):
    """site - a console whose users may release spam and phishing, not impostors."""
    need(SHARED.is_dir(), f"the shared corpus at {SHARED}")
    gateway = start_console(tmp_path_factory.mktemp("release"), sink,
                            accepted_domains=["example.com"],
                            user_release=["spam", "phish"])
    yield gateway
    gateway.stop()


def test_users_release_only_the_categories_the_site_allows(site, sink):
    add_user(site, "jill", "user", "jill@example.com", digest="1")
    phish_qid = queue_id(site.send(phish("jill phish", "jill@example.com"),
                                   rcpts=["jill@example.com"]))
    impostor_qid = queue_id(site.send(impostor("jill@example.com"),
                                      rcpts=["jill@example.com"]))
    jill = Console(site)
    assert jill.login("jill").status_code == 200
    fake = jill.item_of(impostor_qid)
    assert fake["category"] == "impostor"
    refused = jill.post(f"/api/v1/quarantine/{fake['id']}/release")
    assert refused.status_code == 403 and "request" in refused.json()["detail"]
    # Nor may she let its sender through for herself.
    allow = jill.post(f"/api/v1/quarantine/{fake['id']}/allow-sender")
    assert allow.status_code == 403 and "administrator" in allow.json()["detail"]
    page = jill.get(f"/console/quarantine/{fake['id']}")
    assert page.status_code == 200 and 'data-action="request_release"' in page.text
    assert 'data-action="release"' not in page.text

    admin = Console(site)
    admin.login("admin")
    assert admin.post("/api/v1/digest/run").json()["sent"] >= 1
    [digest] = wait_digest(sink, "jill@example.com")
    body = digest.get_content()
    assert "[impostor]" in body and "[phish]" in body
    labels = [label for label, _ in links(digest)]
    assert labels.count("Release") == 1 and labels.count("Request release") == 1

    lure = jill.item_of(phish_qid)
    assert lure["category"] == "phish"
    released = jill.post(f"/api/v1/quarantine/{lure['id']}/release")
    assert released.status_code == 200 and released.json()["status"] == "released"
    jill.close()
    admin.close()


@pytest.mark.parametrize("relative, spam", [
    ("olevba/sample_with_vba.ppt", True),
    ("olevba/sample_with_vba.ppt", False),
    ("excel4-macros/excel4_sample_macro.xlsm", True),
    ("excel4-macros/excel4_sample_macro.xlsb", False),
])
def test_documents_with_auto_exec_or_excel4_macros_are_held_as_malware(site, relative,
                                                                       spam):
    # Users here may release spam: a spam run that carries a macro dropper, and a
    # plain note the spam model takes for ham, must both be held as malware.
    subject = f"figures {relative} {'spam' if spam else 'note'}"
    qid = queue_id(site.send(with_document(relative, "bob@example.com", subject, spam),
                             rcpts=["bob@example.com"]))
    verdict = site.verdict(subject)
    assert verdict["action"] == "quarantine", verdict
    assert verdict["category"] == "malware", verdict
    assert verdict["categories"]["malware"] >= 8.0
    if spam:
        # The spam score alone reaches this site's spam quarantine threshold (3).
        assert verdict["categories"]["spam"] >= 3.0, verdict
    bob = Console(site)
    assert bob.login("bob").status_code == 200
    item = bob.item_of(qid)
    assert item["category"] == "malware"
    refused = bob.post(f"/api/v1/quarantine/{item['id']}/release")
    assert refused.status_code == 403, refused.text
    assert bob.item_of(qid)["status"] == item["status"]
    bob.close()


def test_start_warns_when_phishing_would_be_released_as_spam(site):
    # No language model is trained here, and users may release spam.
    assert "no language model is trained, so most phishing is held as spam" in site.log()


def test_malware_can_never_be_released_by_users(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_text('[web]\nuser_release = ["spam", "malware"]\n')
    result = subprocess.run([sys.executable, "-m", "mailward", "config", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "web.user_release" in result.stderr
    assert "Traceback" not in result.stderr
