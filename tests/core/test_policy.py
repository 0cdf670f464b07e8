"""The policy: scores from the scores file, caps, thresholds, lists."""

from __future__ import annotations

import pytest

from mailward.config import ConfigError, PolicySettings
from mailward.policy import Policy, load_scores, parse_scores
from mailward.verdict import Action, Category, Finding

SCORES = """
[actions]
tag = 5.0
quarantine = 15.0
[categories.spam]
cap = 20.0
[categories.malware]
reject = 10.0
[symbols]
SPAMMY = 4.0
VERY = { score = 30.0 }
VIRUS = { score = 12.0 }
FORCE_Q = { score = 0.5, action = "quarantine" }
GOOD = -3.0
"""


def policy(**settings) -> Policy:
    return Policy(parse_scores(SCORES, "test"), PolicySettings(**settings))


def test_scores_sum_and_the_strictest_rule_wins():
    verdict = policy().decide([Finding("SPAMMY", Category.SPAM, weight=2.0)])
    assert verdict.score == 8.0 and verdict.action == Action.TAG
    assert verdict.reason == "total score 8.00 >= tag threshold 5"


def test_category_cap_limits_one_category():
    verdict = policy().decide([Finding("VERY", Category.SPAM)])
    assert verdict.categories["spam"] == 20.0 and verdict.action == Action.QUARANTINE


def test_category_threshold_and_forced_action():
    assert policy().decide([Finding("VIRUS", Category.MALWARE)]).action == Action.REJECT
    forced = policy().decide([Finding("FORCE_Q", Category.POLICY)])
    assert forced.action == Action.QUARANTINE and "forces quarantine" in forced.reason


def test_negative_scores_lower_the_total_but_not_a_category_threshold():
    verdict = policy().decide([Finding("VIRUS", Category.MALWARE),
                               Finding("GOOD", Category.SPAM, weight=5)])
    assert verdict.action == Action.REJECT


def test_unknown_symbols_score_zero():
    assert policy().decide([Finding("NEVER_HEARD", Category.SPAM)]).score == 0.0


def test_block_and_allow_lists():
    blocked = policy(block_senders=["@bad.example"]).decide([], sender="x@bad.example")
    assert blocked.action == Action.REJECT and "block list" in blocked.reason
    spammy = Finding("SPAMMY", Category.SPAM, weight=5)
    passed = Finding("DMARC_PASS", Category.AUTH)
    friendly = policy(allow_senders=["friend@example.org"])
    allowed = friendly.decide([spammy, passed], sender="Friend@example.org")
    assert allowed.action == Action.DELIVER and "allow list" in allowed.reason
    # A From anyone can write allows nothing; a trusted relay's mail counts as authenticated.
    forged = friendly.decide([spammy], sender="friend@example.org")
    assert forged.action == Action.QUARANTINE
    assert "allow list (friend@example.org) is not applied" in forged.reason
    assert friendly.decide([spammy], sender="friend@example.org",
                           trusted_peer=True).action == Action.DELIVER
    malware = friendly.decide([Finding("VIRUS", Category.MALWARE), passed],
                              sender="friend@example.org")
    assert malware.action == Action.REJECT


def test_tag_external_senders():
    verdict = policy(tag_external=True).decide([Finding("EXTERNAL_SENDER", Category.POLICY)])
    assert verdict.action == Action.TAG and verdict.reason == "external sender"


@pytest.mark.parametrize("text, error", [
    ("[symbols]\nX = 'high'", "symbols.X"),
    ("[symbols]\nX = { score = 1, action = 'drop' }", "symbols.X"),
    ("[categories.nonsense]\ncap = 1", "categories.nonsense"),
    ("[bogus]", "unknown table"),
    ("[actions]\nquarantine = true", "actions.quarantine"),
    ("x = [", "not valid TOML"),
    ("[symbols]\nSPAM_MODEL = 3", "actions: no thresholds"),
    ("[actions]\ntag = 20\nquarantine = 10",
     "actions.tag = 20 is not below actions.quarantine = 10"),
    ("[actions]\nquarantine = 10\nreject = 10", "actions.quarantine = 10 is not below"),
    ("[actions]\ntag = 5\n[categories.phish]\ntag = 4\nreject = 3",
     "categories.phish.tag = 4 is not below categories.phish.reject = 3"),
])
def test_a_bad_scores_file_names_what_to_fix(text, error):
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        parse_scores(text, "site.toml")


def test_the_shipped_scores_file_parses_and_scores_every_builtin_symbol():
    from mailward.registry import check_classes

    scores = load_scores()
    missing = [s for cls in check_classes() for s in cls.symbols if s not in scores.symbols]
    assert missing == []


def test_a_scored_symbol_no_check_emits_is_named_with_the_closest_known_one():
    from mailward.policy import check_symbols

    scores = parse_scores("[actions]\ntag = 6\n[symbols]\nSPAM_MODLE = 3\nZZZQQQ = 1\n"
                          "SPAM_MODEL = 2\n", "site.toml")
    with pytest.raises(ConfigError) as error:
        check_symbols(scores, ["SPAM_MODEL", "HAM_MODEL", "AV_EICAR"])
    assert str(error.value) == ("site.toml: symbols.SPAM_MODLE (did you mean SPAM_MODEL?), "
                                "symbols.ZZZQQQ: no check emits these symbols")
    check_symbols(parse_scores(SCORES, "test"), ["SPAMMY", "VERY", "VIRUS", "FORCE_Q", "GOOD"])


def test_of_rules_reaching_one_action_the_most_dangerous_category_names_the_verdict():
    scores = parse_scores("[actions]\nquarantine = 15.0\n[categories.spam]\nquarantine = 3.0\n"
                          "[categories.impostor]\nquarantine = 10.0\n[symbols]\nSPAMMY = 4.0\n"
                          "BEC = 11.0\n", "test")
    verdict = Policy(scores, PolicySettings()).decide(
        [Finding("SPAMMY", Category.SPAM), Finding("BEC", Category.IMPOSTOR)])
    assert verdict.action == Action.QUARANTINE and verdict.category == Category.IMPOSTOR
    assert verdict.reason == "impostor score 11.00 >= quarantine threshold 10"


def test_a_total_score_verdict_is_held_as_phishing_when_its_phish_score_reaches_a_threshold():
    scores = parse_scores("[actions]\nquarantine = 15.0\n[categories.phish]\ntag = 4.0\n"
                          "quarantine = 10.0\n[symbols]\nSPAMMY = 20.0\nLURE = 5.0\nCUE = 1.0\n",
                          "test")
    judged = Policy(scores, PolicySettings()).decide
    lure = judged([Finding("SPAMMY", Category.SPAM), Finding("LURE", Category.PHISH)])
    assert lure.action == Action.QUARANTINE and lure.category == Category.PHISH
    cue = judged([Finding("SPAMMY", Category.SPAM), Finding("CUE", Category.PHISH)])
    assert cue.action == Action.QUARANTINE and cue.category == Category.SPAM


def test_significant_malware_names_the_verdict_whichever_rule_chose_the_action():
    scores = parse_scores("[actions]\nquarantine = 15.0\n[categories.malware]\n"
                          "tag = 4.0\nquarantine = 8.0\n[symbols]\nSPAMMY = 20.0\n"
                          "MACRO = 5.0\nHINT = 2.0\n"
                          "DMARC_Q = { score = 1.0, action = 'quarantine' }\n", "test")
    judged = Policy(scores, PolicySettings()).decide
    # The malware score reaches only its tag threshold; the quarantine came from
    # the larger spam score, or from a symbol of another category.
    spammy = judged([Finding("SPAMMY", Category.SPAM),
                     Finding("MACRO", Category.MALWARE)])
    assert spammy.action == Action.QUARANTINE and spammy.category == Category.MALWARE
    assert spammy.reason == "total score 25.00 >= quarantine threshold 15"
    forced = judged([Finding("DMARC_Q", Category.AUTH),
                     Finding("MACRO", Category.MALWARE)])
    assert forced.action == Action.QUARANTINE and forced.category == Category.MALWARE
    assert forced.reason == "symbol DMARC_Q forces quarantine"
    # Malware below its lowest threshold does not name the verdict.
    weak = judged([Finding("SPAMMY", Category.SPAM), Finding("HINT", Category.MALWARE)])
    assert weak.action == Action.QUARANTINE and weak.category == Category.SPAM
    assert judged([Finding("DMARC_Q", Category.AUTH),
                   Finding("HINT", Category.MALWARE)]).category == Category.AUTH
    # Nor does the allow list clear a message that significant malware names.
    allowed = Policy(scores, PolicySettings(allow_senders=["@example.org"])).decide(
        [Finding("DMARC_Q", Category.AUTH), Finding("MACRO", Category.MALWARE)],
        sender="a@example.org", trusted_peer=True)
    assert allowed.action == Action.QUARANTINE and allowed.category == Category.MALWARE


def test_shipped_scores_hold_a_dmarc_quarantine_with_a_phishing_lure_as_phishing():
    verdict = Policy(load_scores(), PolicySettings()).decide(
        [Finding("DMARC_POLICY_QUARANTINE", Category.AUTH),
         Finding("URL_LOOKALIKE", Category.PHISH)])
    assert verdict.action == Action.QUARANTINE and verdict.category == Category.PHISH


@pytest.mark.parametrize("symbols", [("ATTACH_MACRO", "ATTACH_MACRO_AUTOEXEC"),
                                     ("ATTACH_XLM_MACRO",)])
@pytest.mark.parametrize("spam", [("SPAM_MODEL", 3.0), ("HAM_MODEL", 8.0)])
def test_shipped_scores_hold_auto_exec_and_excel4_macros_as_malware(symbols, spam):
    # As spam (a spam run carrying a dropper) or as ham (a site model that learnt
    # a similar message as good mail), the macros alone hold the message as malware.
    findings = [Finding(name, Category.MALWARE) for name in symbols]
    findings.append(Finding(spam[0], Category.SPAM, weight=spam[1]))
    verdict = Policy(load_scores(), PolicySettings()).decide(findings)
    assert verdict.action == Action.QUARANTINE and verdict.category == Category.MALWARE


def test_shipped_scores_leave_macros_that_do_not_run_on_their_own_to_the_total():
    findings = [Finding("ATTACH_MACRO", Category.MALWARE),
                Finding("SPAM_MODEL", Category.SPAM, weight=5.0)]
    verdict = Policy(load_scores(), PolicySettings()).decide(findings)
    assert verdict.action == Action.QUARANTINE and verdict.category == Category.SPAM
