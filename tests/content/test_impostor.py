"""Impostor (BEC) detection: names, lookalikes, divergence, requests; the set and the ham.

The impostor set is generated (``tests/content/impostors.py``) and judged by
a real gateway in this process with every check on; corpus ham goes through
the same gateway. End-to-end tests import the directory with the CLI and
send over SMTP to a real ``mailward serve``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

import pytest

from mailward.content.impostor import CUES, _CUE_PATTERNS, lookalike
from mailward.content.vip import DirectoryError, Person, matches, parse_csv
from mailward.policy import load_scores
from mailward.verdict import Action, Category
from tests.content.impostors import (
    OWN,
    PARTNER,
    PEOPLE_CSV,
    ham_messages,
    impostor_set,
    judge_all,
)

SCORES = load_scores()
TAG = SCORES.category_thresholds[Category.IMPOSTOR][Action.TAG]
QUARANTINE = SCORES.category_thresholds[Category.IMPOSTOR][Action.QUARANTINE]


# Names.

CEO = Person.make("Helena Marchetti", ["helena.marchetti@example.com"], "CEO")
CFO = Person.make("Tobias Lindqvist", ["tobias.lindqvist@example.com"], "CFO",
                  ["Toby L."])


@pytest.mark.parametrize("shown, how", [
    ("Helena Marchetti", "full name"), ("marchetti, helena", "full name"),
    ("HELENA MARCHETTI (CEO)", "full name"), ("H. Marchetti", "initial"),
    ("Hélèna Marchetti", "full name"), ("Неlеna Marchetti", "full name"),
    ("Ｈｅｌｅｎａ Ｍａｒｃｈｅｔｔｉ", "full name"), ("Dr. Helena Marchetti", "full name"),
])
def test_display_name_forms_match_the_person(shown, how):
    assert matches(CEO, shown) == how


def test_nicknames_and_aliases_match():
    assert matches(CFO, "Toby Lindqvist") == "nickname"
    assert matches(CFO, "Toby L.") == "alias"
    assert matches(Person.make("William Okafor"), "Bill Okafor") == "nickname"


@pytest.mark.parametrize("shown", ["Marchetti", "Maria Marchetti", "Helena M.", "Helena",
                                   "Giulia Marchetti", "Helena Marchetti's assistant team "
                                   "at the north office of operations", ""])
def test_other_names_do_not_match(shown):
    assert matches(CEO, shown) is None


def test_csv_import_parses_and_names_bad_rows():
    people = parse_csv(PEOPLE_CSV)
    assert [p.name for p in people][:2] == ["Helena Marchetti", "Tobias Lindqvist"]
    assert people[1].addresses == ("tobias.lindqvist@example.com", "tl@example.com")
    assert people[1].aliases == ("Toby Lindqvist",)
    with pytest.raises(DirectoryError, match="name and email"):
        parse_csv("who,where\nA,b@c.d\n")
    with pytest.raises(DirectoryError, match="line 3: 'not-an-address'"):
        parse_csv("name,email\nA B,a@b.example\nC D,not-an-address\n")
    # The number is the file's line, blank and comment lines counted.
    with pytest.raises(DirectoryError, match="line 5: 'X' has no email address"):
        parse_csv("name,email\nA B,a@b.example\n\n# later\nX\n")
    with pytest.raises(DirectoryError, match="empty"):
        parse_csv("\n\n")


# Lookalike domains.

PROTECTED = [OWN, PARTNER]


@pytest.mark.parametrize("domain", [
    "examp1e.com", "exarnple.com", "example.co", "example-corp.com", "examples.com",
    "xn--exmple-cua.com", "exаmple.com", "example.com.payments-secure.net",
    "brightwater-suppiy.example", "supply-brightwater.example", "brightvvater-supply.example",
    "brightwatersupply.com"])
def test_lookalikes_of_protected_domains(domain):
    assert lookalike(domain, PROTECTED) is not None


@pytest.mark.parametrize("domain", ["example.com", "mail.example.com", "gmail.com",
                                    "sample.org", "exampleinternationalgroup.org",
                                    "brightwater-supply.example", "b.brightwater-supply.example",
                                    "spamassassin.org", ""])
def test_protected_and_unrelated_domains_are_not_lookalikes(domain):
    assert lookalike(domain, PROTECTED) is None


# The request.


@pytest.mark.parametrize("symbol, text", [
    ("IMPOSTOR_PAYMENT_REQUEST", "Bitte die Überweisung heute freigeben"),
    ("IMPOSTOR_PAYMENT_REQUEST", "merci d'effectuer un paiement"),
    ("IMPOSTOR_GIFT_CARDS", "compra tarjetas de regalo"),
    ("IMPOSTOR_GIFT_CARDS", "buy Google Play cards"),
    ("IMPOSTOR_BANK_CHANGE", "onze nieuwe bankgegevens"),
    ("IMPOSTOR_BANK_CHANGE", "please update my direct deposit"),
    ("IMPOSTOR_URGENCY", "È urgente, subito"),
    ("IMPOSTOR_SECRECY", "c'est confidentiel"),
    ("IMPOSTOR_TASK_REQUEST", "Are you available?"),
])
def test_request_phrases_in_several_languages(symbol, text):
    assert _CUE_PATTERNS[symbol].search(text)
    assert symbol in CUES


def test_request_words_inside_other_words_do_not_count():
    assert not _CUE_PATTERNS["IMPOSTOR_URGENCY"].search("insurgents asapient")
    assert not _CUE_PATTERNS["IMPOSTOR_GIFT_CARDS"].search("regiftcards")


# The generated set and the corpus ham, judged by a real gateway.


@pytest.fixture(scope="module")
def impostor_results(tmp_path_factory):
    samples = impostor_set(24)
    results = asyncio.run(judge_all(tmp_path_factory.mktemp("bec"),
                                    [(s.raw, s.mail_from, s.recipient) for s in samples]))
    return samples, results


def test_at_least_95_percent_of_the_impostor_set_is_quarantined(impostor_results):
    samples, results = impostor_results
    caught = collections.Counter()
    for sample, (score, verdict) in zip(samples, results):
        if score >= QUARANTINE and verdict.action.rank >= Action.QUARANTINE.rank:
            caught[sample.kind] += 1
    total = sum(caught.values())
    assert total >= 0.95 * len(samples), caught
    kinds = collections.Counter(s.kind for s in samples)
    for kind, count in kinds.items():
        assert caught[kind] >= 0.9 * count, (kind, caught[kind], count)


def test_impostor_findings_carry_evidence(impostor_results):
    samples, results = impostor_results
    [(score, verdict)] = [r for s, r in zip(samples, results) if s.kind == "display-name"][:1]
    found = {f.symbol: f.detail for f in verdict.findings if f.category == Category.IMPOSTOR}
    assert "IMPOSTOR_DISPLAY_NAME" in found and "but the address is" in \
        found["IMPOSTOR_DISPLAY_NAME"]
    assert verdict.category == Category.IMPOSTOR


def test_encoded_word_display_names_are_decoded_before_matching(impostor_results):
    samples, results = impostor_results
    encoded = [(s, r) for s, r in zip(samples, results)
               if s.kind == "display-name" and b"From: =?" in s.raw]
    assert encoded, "the set has RFC 2047 encoded display names"
    assert all(r[0] >= QUARANTINE for _, r in encoded)


def test_no_ham_of_the_corpus_slice_is_flagged(shared, tmp_path):
    paths = sorted((shared / "corpus/spam/ham").iterdir())[::10]
    results = asyncio.run(judge_all(tmp_path, ham_messages(paths)))
    flagged = [(p.name, score) for p, (score, _) in zip(paths, results) if score >= TAG]
    assert len(results) >= 250 and flagged == []


def test_ham_wearing_a_protected_name_is_flagged(shared, tmp_path):
    # The same ham with its From rewritten: the check is not blind to ham.
    paths = sorted((shared / "corpus/spam/ham").iterdir())[:20]
    dressed = []
    for raw, mail_from, rcpt in ham_messages(paths):
        head, sep, body = raw.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n")
                 if not line.lower().startswith((b"from:", b"reply-to:"))
                 and not line.startswith((b" ", b"\t"))]
        lines.insert(0, b"From: Tobias Lindqvist <t.lindqvist.cfo@gmail.com>")
        dressed.append((b"\r\n".join(lines) + sep + b"I need you to process a wire "
                        b"transfer today.\r\n" + body, mail_from, rcpt))
    results = asyncio.run(judge_all(tmp_path, dressed))
    assert all(score >= TAG for score, _ in results)


def test_a_mailing_list_reply_to_is_not_divergence(tmp_path):
    raw = (b"From: Tobias Lindqvist <tobias@lists.invalid>\r\nTo: user@example.com\r\n"
           b"Reply-To: dev@lists.invalid\r\nList-Id: <dev.lists.invalid>\r\n"
           b"Subject: release\r\nMessage-ID: <l1@lists.invalid>\r\n\r\nNotes.\r\n")
    [(score, verdict)] = asyncio.run(judge_all(tmp_path, [(raw, "bounce@lists.invalid",
                                                           "user@example.com")]))
    symbols = {f.symbol for f in verdict.findings}
    assert "IMPOSTOR_DISPLAY_NAME" in symbols
    assert not symbols & {"IMPOSTOR_REPLY_TO_DIFFERS", "IMPOSTOR_RETURN_PATH_DIFFERS"}


# End to end over SMTP, with the directory imported by the CLI.



def test_smtp_vip_import_then_spoof_is_quarantined_and_known_sender_is_not_first_contact(
        gateway_factory, smtp_sink, tmp_path):
    zone = tmp_path / "empty.zone"
    zone.write_text("$ORIGIN invalid.\n")
    gateway = gateway_factory({"smtp": {"accepted_domains": [OWN]},
                               "impostor": {"partner_domains": [PARTNER]},
                               "dns": {"zone_file": str(zone)}}, relay=smtp_sink.url)
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE_CSV, encoding="utf-8")
    out = gateway.cli("vip", "import", str(people)).stdout.decode()
    assert "imported 5 protected people" in out
    listed = gateway.cli("vip", "list", "--json").stdout.decode().splitlines()
    assert json.loads(listed[0])["name"] == "Chidi Okonkwo"
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nX\n")
    refused = gateway.cli("vip", "import", str(bad), check=False)
    assert refused.returncode == 2 and b"name and email" in refused.stderr
    bad.write_text("name,email\nX\n")
    refused = gateway.cli("vip", "import", str(bad), check=False)
    assert refused.returncode == 2, refused.stdout
    assert b"line 2: 'X' has no email address" in refused.stderr
    assert len(gateway.cli("vip", "list").stdout.splitlines()) == 5

    sender = "helena.m.office@gmail.com"
    first = (f"From: =?utf-8?B?SGVsZW5hIE1hcmNoZXR0aQ==?= <{sender}>\r\n"
             "To: finance@example.com\r\nSubject: spoof-one\r\n"
             "Message-ID: <s1@gmail.invalid>\r\n\r\nAre you available? I need you to "
             "process a wire transfer today, keep it confidential.\r\n").encode()
    reply = gateway.send(first, mail_from=sender, rcpts=["finance@example.com"])
    assert reply.startswith("2.0.0")
    verdict = gateway.verdict("spoof-one")
    assert verdict["action"] == "quarantine" and verdict["category"] == "impostor"
    found = {f["symbol"] for f in verdict["findings"]}
    assert {"IMPOSTOR_DISPLAY_NAME", "IMPOSTOR_FIRST_CONTACT",
            "IMPOSTOR_PAYMENT_REQUEST"} <= found

    # An ordinary message from a partner's address is delivered and indexed; a
    # later one from that address wearing a protected name is no first contact.
    known = f"billing@{PARTNER}"
    plain = (f"From: Billing <{known}>\r\nTo: finance@example.com\r\nSubject: plain-one\r\n"
             "Message-ID: <p1@partner.invalid>\r\n\r\nMinutes of the meeting.\r\n").encode()
    gateway.send(plain, mail_from=known, rcpts=["finance@example.com"])
    assert gateway.verdict("plain-one")["action"] in ("deliver", "tag")
    later = (f"From: Chidi Okonkwo <{known}>\r\nTo: finance@example.com\r\n"
             "Subject: spoof-two\r\nMessage-ID: <p2@partner.invalid>\r\n\r\nHello.\r\n").encode()
    gateway.send(later, mail_from=known, rcpts=["finance@example.com"])
    found = {f["symbol"] for f in gateway.verdict("spoof-two")["findings"]}
    assert "IMPOSTOR_DISPLAY_NAME" in found and "IMPOSTOR_FIRST_CONTACT" not in found


def test_hostile_headers_are_bounded_and_malformed_from_is_skipped(tmp_path):
    huge_name = "Helena " * 20_000 + "Marchetti"
    replies = ", ".join(f"r{i}@reply{i}.invalid" for i in range(3000))
    hostile = (f'From: "{huge_name}" <x@gmail.com>\r\nTo: finance@example.com\r\n'
               f"Reply-To: {replies}\r\nSubject: {'urgent ' * 5000}\r\n"
               "Message-ID: <h1@gmail.invalid>\r\n\r\n").encode() \
        + ("wire transfer " * 200_000).encode() + b"\x00\xff\r\n"
    malformed = (b"From: Helena Marchetti <helena@gmail.com>, <x@y>>\r\nFrom: b@c.d\r\n"
                 b"To: finance@example.com\r\nSubject: two froms\r\n\r\nwire transfer\r\n")
    started = time.monotonic()
    results = asyncio.run(judge_all(tmp_path, [(hostile, "x@gmail.com", "finance@example.com"),
                                               (malformed, "", "finance@example.com")]))
    assert time.monotonic() - started < 60
    hostile_symbols = {f.symbol for f in results[0][1].findings}
    assert "IMPOSTOR_DISPLAY_NAME" not in hostile_symbols  # a sentence is not a name
    assert not {f.symbol for f in results[1][1].findings if f.category == Category.IMPOSTOR}


def test_a_malformed_from_still_shows_a_protected_name(tmp_path):
    # An unquoted comma or a stray ",_" breaks the strict parse that DMARC and
    # the sender lists need; the display name the reader sees is still judged.
    people = PEOPLE_CSV + "Jane Doe,jane.doe@example.com,Chief Executive Officer,\n"
    body = b"To: finance@example.com\r\nSubject: wire\r\n\r\nI need you to process " \
        b"a wire transfer today.\r\n"
    froms = [b"Jane Doe, CEO <jane.doe.ceo@gmail.com>",
             b"Jane Doe ,_<jane.doe.ceo@gmail.com>",
             b"Jane Doe <jane.doe.ceo@gmail.com>"]
    messages = [(b"From: " + value + b"\r\n" + body, "jane.doe.ceo@gmail.com",
                 "finance@example.com") for value in froms]
    results = asyncio.run(judge_all(tmp_path, messages, people_csv=people))
    for value, (score, verdict) in zip(froms, results):
        found = {f.symbol: f for f in verdict.findings}
        assert "IMPOSTOR_DISPLAY_NAME" in found, value
        assert found["IMPOSTOR_DISPLAY_NAME"].data["address"] == "jane.doe.ceo@gmail.com"
        assert found["IMPOSTOR_DISPLAY_NAME"].data["person"] == "Jane Doe"
        assert score >= TAG, value
    for _, verdict in results[:2]:
        assert verdict.has("HDR_FROM_MALFORMED") and verdict.has("DMARC_BAD_FROM")
    assert not results[2][1].has("HDR_FROM_MALFORMED")


def test_several_from_headers_get_no_impostor_guess(tmp_path):
    raw = (b"From: Helena Marchetti, CEO <helena.ceo@gmail.com>\r\n"
           b"From: Billing <billing@example.net>\r\nTo: finance@example.com\r\n"
           b"Subject: wire\r\n\r\nI need you to process a wire transfer today.\r\n")
    [(score, verdict)] = asyncio.run(judge_all(tmp_path, [(raw, "helena.ceo@gmail.com",
                                                           "finance@example.com")]))
    assert verdict.has("HDR_FROM_MULTIPLE")
    assert not [f for f in verdict.findings if f.category == Category.IMPOSTOR]
    assert score == 0.0


def test_another_suffix_is_a_weaker_lookalike():
    assert lookalike("example.net", PROTECTED).weak
    assert not lookalike("examp1e.com", PROTECTED).weak
    assert SCORES.symbols["IMPOSTOR_LOOKALIKE_SUFFIX"].score < \
        SCORES.symbols["IMPOSTOR_LOOKALIKE_DOMAIN"].score


def test_an_alias_written_as_an_address_never_matches_a_missing_display_name():
    person = Person.make("Jane Doe", ["jane.doe@example.com"], "CEO", ["jd@example.com"])
    assert matches(person, "") is None
    assert matches(person, "jd@example.com") is None
    assert matches(person, "Jane Doe") == "full name"
