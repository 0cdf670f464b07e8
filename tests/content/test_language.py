"""Social-engineering language: cues with their phrases, and a model trained here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.content.conftest import corpus_slice

CASES = {
    "en": ("Your account will be suspended. Verify your account within 24 hours. "
           "Our security team requires it. Keep this between us.",
           {"threat", "credential_request", "urgency", "authority", "secrecy"}),
    "de": ("Ihr Konto wird gesperrt. Bitte bestätigen Sie Ihr Konto umgehend. "
           "Die IT-Abteilung. Eine Überweisung ist ausstehend, streng vertraulich.",
           {"threat", "credential_request", "urgency", "authority", "payment_request",
            "secrecy"}),
    "fr": ("Votre compte sera suspendu. Vérifiez votre compte immédiatement. "
           "Vous avez gagné un remboursement, le service informatique.",
           {"threat", "credential_request", "urgency", "reward", "authority"}),
    "es": ("Su cuenta ha sido bloqueada. Verifique su cuenta de inmediato y realice el pago "
           "pendiente. Ha ganado un premio, estrictamente confidencial.",
           {"threat", "credential_request", "urgency", "payment_request", "reward",
            "secrecy"}),
}


@pytest.mark.parametrize("language", sorted(CASES))
def test_cues_name_the_lever_and_the_phrases(language):
    from mailward.content.language import find_cues

    text, expected = CASES[language]
    cues = {cue.name: cue for cue in find_cues(text)}
    assert set(cues) == expected
    for cue in cues.values():
        assert language in cue.languages
        assert all(phrase in text.lower() for phrase in cue.phrases)


def test_ordinary_mail_raises_no_cue():
    from mailward.content.language import find_cues

    text = ("Hi Sam, the meeting moved to Thursday. I attached the slides from last week; "
            "let me know what you think of the second chart. Cheers, Dana")
    assert find_cues(text) == []


def test_the_prefilter_finds_the_cues_every_pattern_finds_on_corpus_text(corpus):
    from mailward.content.language import find_cues, reader_text
    from mailward.message import Message

    fired = 0
    for path in (corpus_slice("spam/ham", 0, 200, step=13)
                 + corpus_slice("spam/spam", 0, 200, step=5)
                 + corpus_slice("phishing", 0, 200, step=3)):
        text = reader_text(Message(path.read_bytes()))
        cues = find_cues(text)
        assert cues == find_cues(text, prefilter=False), path.name
        fired += len(cues)
    assert fired > 100


def test_every_cue_pattern_has_a_prefilter():
    from mailward.content.language import _PREFILTER

    assert all(heads is not None and (heads.windows or heads.words or heads.whole)
               for by_language in _PREFILTER.values() for heads in by_language.values())


@pytest.mark.parametrize("text", [
    "\u0130MMED\u0130ATELY verify your account",   # dotted capital I
    "\u0131mmediately, w\u0131th\u0131n 24 hours",  # dotless i
    "\u017fofort, \u017fu\u017fpicious activity",   # long s
    "LA\u212aE ACT NOW, \u212aeep this between us",  # Kelvin sign
    "FINAL  NOTICE final notice TIME-SENSITIVE time sensitive don't tell",
    "payé urgente, suspendidas, ÚLTIMO AVISO, rückerstattung, ΣΟΦΟΡΤ",
    "insurgent URGENT urgently,urgent nonurgent refunded refund; police-police",
])
def test_the_prefilter_agrees_on_case_tricks(text):
    from mailward.content.language import find_cues

    assert find_cues(text) == find_cues(text, prefilter=False)
    assert find_cues(text)


def test_folding_matches_ignorecase_for_every_character_of_the_cues():
    import re
    import sys

    from mailward.content.language import CUES, fold

    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    folded = fold(every)
    assert len(folded) == len(every)
    assert ([m.start() for m in re.finditer(r"\w", folded)]
            == [m.start() for m in re.finditer(r"\w", every)])
    letters = {c for by_language in CUES.values() for phrases in by_language.values()
               for phrase in phrases for c in phrase if c.isalnum()}
    for letter in letters:
        for match in re.finditer(re.escape(letter), every, re.IGNORECASE):
            assert folded[match.start()] == fold(letter), (letter, match.group(0))


async def test_c26_hidden_text_and_cues_are_findings(services, shared):
    from mailward.content.hidden import HiddenTextCheck
    from mailward.content.language import LanguageCheck
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task

    raw = (shared / "cases" / "C26_zerofont.eml").read_bytes()
    task = Task(Envelope(queue_id="c26"), services, Message(raw))
    hidden = {f.symbol: f for f in await HiddenTextCheck().check(task)}
    assert {"CONTENT_HIDDEN_TEXT", "CONTENT_HIDDEN_SALTING"} <= set(hidden)
    assert "scanned and confirmed safe" in hidden["CONTENT_HIDDEN_TEXT"].detail
    assert task.message.text.startswith("Your Microsoft 365 password expires today")
    language = {f.symbol: f for f in await LanguageCheck.from_services(services).check(task)}
    assert language["LANG_URGENCY"].data["phrases"] == ["expires today"]
    assert "password expires" in language["LANG_CREDENTIAL_REQUEST"].data["phrases"]
    assert all(f.category == "phish" for f in language.values())
    # "Your Microsoft 365 password expires today", from example.net.
    assert language["LANG_BRAND_IMPERSONATION"].data == {"brand": "microsoft",
                                                         "domain": "example.net"}


async def test_a_brand_counts_only_as_a_costume(services):
    from mailward.content.language import LanguageCheck
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task

    check = LanguageCheck.from_services(services)

    async def symbols(sender: str, text: str) -> set[str]:
        raw = (f"From: {sender}\r\nSubject: notice\r\n\r\n{text}\r\n").encode()
        task = Task(Envelope(queue_id="brand"), services, Message(raw))
        return {f.symbol for f in await check.check(task)}

    lure = "Your PayPal account will be suspended. Verify your account today."
    assert "LANG_BRAND_IMPERSONATION" in await symbols("PayPal <service@pay-secure.example>", lure)
    # A malformed From ("PayPal, Inc." unquoted) is read as a reader sees it.
    assert "LANG_BRAND_IMPERSONATION" in await symbols(
        "PayPal, Inc. <service@pay-secure.example>", lure)
    # The brand's own domain, a brand named without a lever, a lever without a brand.
    assert "LANG_BRAND_IMPERSONATION" not in await symbols("PayPal <service@paypal.com>", lure)
    assert "LANG_BRAND_IMPERSONATION" not in await symbols(
        "news@press.example", "PayPal reported its quarterly results on Monday.")
    assert "LANG_BRAND_IMPERSONATION" not in await symbols(
        "it@corp.example", "Your account will be suspended. Verify your account today.")
    far = "Hello team. " * 40 + lure
    assert "LANG_BRAND_IMPERSONATION" not in await symbols("x@pay-secure.example", far)


@pytest.fixture(scope="module")
def language_model(corpus):
    from mailward.content.train import train_models

    ham = corpus_slice("spam/ham", 0, 250, step=8)
    phishing = corpus_slice("phishing", 0, 150, step=4)
    results = train_models(ham, [], phishing, holdout=0)
    assert [r.kind for r in results] == ["language"]
    return results[0].model


def test_a_language_model_trained_on_one_slice_sorts_another(language_model):
    from mailward.content.language import language_tokens
    from mailward.content.train import read_message

    def probabilities(files: list[Path]) -> np.ndarray:
        return np.array([language_model.probability(language_tokens(read_message(p)))
                         for p in files])

    ham = probabilities(corpus_slice("spam/ham", 1, 250, step=8))
    phishing = probabilities(corpus_slice("phishing", 1, 150, step=4))
    assert np.mean(phishing > 0.5) > 0.9
    assert np.mean(ham > 0.5) < 0.03


def test_the_language_model_learns_spam_is_not_phishing(language_model):
    # Trained against spam as well, the model reserves its weight for phishing:
    # an advertisement is the spam model's to weigh, not a phisher's lure.
    from mailward.content.language import language_tokens
    from mailward.content.train import read_message, train_models

    ham = corpus_slice("spam/ham", 0, 250, step=8)
    spam = corpus_slice("spam/spam", 0, 200, step=4)
    phishing = corpus_slice("phishing", 0, 150, step=4)
    results = train_models(ham, spam, phishing, holdout=0.25)
    language = next(r for r in results if r.kind == "language")
    assert language.model.meta["ham_and_spam"] == len(ham) + len(spam)
    assert dict(language.quality.rows())["held-out messages"].split(", ")[0].endswith(
        "ham and spam")
    unseen = corpus_slice("spam/spam", 1, 200, step=4)
    def flagged(model) -> float:
        return float(np.mean([model.probability(language_tokens(read_message(p))) > 0.5
                              for p in unseen]))
    assert flagged(language.model) < flagged(language_model)
    assert flagged(language.model) < 0.2


async def test_the_site_language_model_speaks_through_the_check(language_model, services):
    from mailward.content.language import LanguageCheck, language_model_path
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task

    language_model.save(language_model_path(services))
    check = LanguageCheck.from_services(services)
    raw = corpus_slice("phishing", 2, 1, step=4)[0].read_bytes()
    task = Task(Envelope(queue_id="p1"), services, Message(raw))
    found = {f.symbol: f for f in await check.check(task)}
    assert found["LANG_PHISH_MODEL"].weight > 0
    short = Message(b"Subject: hi\r\n\r\nuse this address instead, please.\r\n")
    task = Task(Envelope(queue_id="p2"), services, short)
    assert "LANG_PHISH_MODEL" not in {f.symbol for f in await check.check(task)}
