"""Policy: findings in, one action out.

The policy alone knows scores, category caps, thresholds and the sender
allow and block lists; checks only name outcomes. The scores file (TOML,
shipped as ``scores.toml``, replaceable with ``[policy] scores_file``) gives
each symbol a score and optionally an action it forces; each category a cap
and thresholds; and the thresholds on the total. The policy adds, caps and
compares, and records which step chose the action so that anyone can audit
the sum. The verdict's category, which decides who may release a held
message, is the most dangerous one whose own score reaches its lowest
threshold, not the one with the most points. A symbol that forces
``deliver`` acts as the sender allow list: it clears every action except for
malware. An allow list (this, or ``[policy] allow_senders``) applies only
when the From address is authenticated (``AUTHENTICATED``: an aligned SPF or
DKIM pass, or a trusted ARC sealer's) or the mail comes from a trusted
relay: a From header anyone can write must not switch filtering off.

A site's scores file replaces the shipped one whole, so one that would stop
filtering without a word is an error: no ``[actions]`` thresholds, an
action's threshold not below a stricter one's, or a symbol no check emits.
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from mailward.config import ConfigError, PolicySettings
from mailward.verdict import Action, Category, Finding, ScoredFinding, Verdict

log = logging.getLogger("mailward.policy")

_THRESHOLD_ACTIONS = (Action.REJECT, Action.QUARANTINE, Action.TAG)
# Findings that say the From domain is the sender's own: DMARC passed, or a
# DMARC failure was overridden by a trusted ARC sealer that saw it pass.
AUTHENTICATED = frozenset({"DMARC_PASS", "ARC_TRUSTED_OVERRIDE"})


@dataclass(frozen=True, slots=True)
class SymbolRule:
    score: float
    action: Action | None = None
    description: str = ""


@dataclass(slots=True)
class Scores:
    """The parsed scores file."""

    symbols: dict[str, SymbolRule]
    totals: dict[Action, float]
    category_caps: dict[Category, float]
    category_thresholds: dict[Category, dict[Action, float]]
    source: str = ""
    warned: set[str] = field(default_factory=set)

    def rule(self, symbol: str) -> SymbolRule:
        rule = self.symbols.get(symbol)
        if rule is None:
            if symbol not in self.warned:
                self.warned.add(symbol)
                log.warning("symbol %s has no score in %s; scoring it 0", symbol,
                            self.source)
            return SymbolRule(0.0)
        return rule


def _action(value: Any, where: str) -> Action:
    try:
        return Action(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of deliver, tag, "
                          "quarantine, reject") from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {value!r} is not a number")
    return float(value)


def parse_scores(text: str, source: str) -> Scores:
    """parse_scores - read a scores file; errors name the key to fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"scores file {source} is not valid TOML: {error}") from None
    unknown = set(data) - {"actions", "categories", "symbols"}
    if unknown:
        raise ConfigError(f"scores file {source}: unknown table(s) {sorted(unknown)}")
    totals = {_action(name, f"{source}: actions.{name}"): _number(v, f"{source}: actions.{name}")
              for name, v in data.get("actions", {}).items()}
    caps: dict[Category, float] = {}
    thresholds: dict[Category, dict[Action, float]] = {}
    for name, table in data.get("categories", {}).items():
        try:
            category = Category(name)
        except ValueError:
            raise ConfigError(f"{source}: categories.{name} is not a category") from None
        for key, value in table.items():
            where = f"{source}: categories.{name}.{key}"
            if key == "cap":
                caps[category] = _number(value, where)
            else:
                thresholds.setdefault(category, {})[_action(key, where)] = _number(value, where)
    symbols: dict[str, SymbolRule] = {}
    for name, value in data.get("symbols", {}).items():
        where = f"{source}: symbols.{name}"
        if isinstance(value, dict):
            extra = set(value) - {"score", "action", "description"}
            if extra:
                raise ConfigError(f"{where}: unknown key(s) {sorted(extra)}")
            action = _action(value["action"], where) if "action" in value else None
            symbols[name] = SymbolRule(_number(value.get("score", 0.0), where), action,
                                       str(value.get("description", "")))
        else:
            symbols[name] = SymbolRule(_number(value, where))
    _check_order(totals, source, "actions")
    for category, limits in thresholds.items():
        _check_order(limits, source, f"categories.{category}")
    if not totals:
        # A site file replaces the shipped one whole: without [actions] no total
        # score, however high, tags or quarantines, and spam has no category ones.
        raise ConfigError(f"{source}: actions: no thresholds (tag, quarantine, reject), so "
                          "mail is delivered whatever its total score; copy the [actions] "
                          "table of the shipped scores.toml")
    return Scores(symbols, totals, caps, thresholds, source)


def _check_order(limits: dict[Action, float], source: str, table: str) -> None:
    """_check_order - ConfigError unless tag < quarantine < reject, where given."""
    given = [action for action in reversed(_THRESHOLD_ACTIONS) if action in limits]
    for milder, stricter in zip(given, given[1:]):
        if limits[milder] >= limits[stricter]:
            raise ConfigError(f"{source}: {table}.{milder} = {limits[milder]:g} is not below "
                              f"{table}.{stricter} = {limits[stricter]:g}; a stricter action "
                              "needs a higher threshold")


def check_symbols(scores: Scores, known: Iterable[str]) -> None:
    """check_symbols - ConfigError naming each scored symbol no check emits (a typo)."""
    names = set(known)
    unknown = [name for name in scores.symbols if name not in names]
    if not unknown:
        return
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(names), n=1)
        named.append(f"symbols.{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    raise ConfigError(f"{scores.source}: {', '.join(named)}: no check emits "
                      f"{'this symbol' if len(unknown) == 1 else 'these symbols'}")


def load_scores(path: str = "") -> Scores:
    """load_scores - the site scores file, or the one shipped in the package."""
    if path:
        try:
            return parse_scores(Path(path).read_text(encoding="utf-8"), path)
        except FileNotFoundError:
            raise ConfigError(f"policy.scores_file: {path} does not exist") from None
    text = resources.files("mailward").joinpath("scores.toml").read_text(encoding="utf-8")
    return parse_scores(text, "scores.toml (shipped)")


def _sender_matches(entries: Iterable[str], address: str) -> str | None:
    address = address.lower()
    domain = address.rpartition("@")[2]
    for entry in entries:
        entry = entry.strip().lower()
        if entry == address or (entry.startswith("@") and entry[1:] == domain):
            return entry
    return None


class Policy:
    """Turns the findings of one message into exactly one Verdict."""

    def __init__(self, scores: Scores, settings: PolicySettings) -> None:
        self.scores = scores
        self.settings = settings

    def score(self, findings: Iterable[Finding]) -> list[ScoredFinding]:
        scored = []
        for finding in findings:
            rule = self.scores.rule(finding.symbol)
            scored.append(ScoredFinding(finding.symbol, finding.category,
                                        rule.score * finding.weight, finding.detail,
                                        finding.data))
        return scored

    def decide(self, findings: Iterable[Finding], sender: str = "",
               trusted_peer: bool = False) -> Verdict:
        """decide - sum, cap, compare; the strictest rule reached wins.

        ``trusted_peer``: the mail came from a trusted relay
        (``auth.trusted_networks``), so its From counts as authenticated.
        """
        findings = list(findings)
        authenticated = trusted_peer or any(f.symbol in AUTHENTICATED for f in findings)
        scored = self.score(findings)
        categories: dict[str, float] = {}
        for finding in scored:
            categories[finding.category] = categories.get(finding.category, 0.0) + finding.score
        for category, cap in self.scores.category_caps.items():
            if categories.get(category, 0.0) > cap:
                categories[category] = cap
        total = sum(categories.values())

        # Each candidate is (action, category, reason); the strictest wins.
        candidates: list[tuple[Action, Category | None, str]] = []
        for finding in scored:
            forced = self.scores.rule(finding.symbol).action
            if forced is not None:
                candidates.append((forced, finding.category,
                                   f"symbol {finding.symbol} forces {forced}"))
        for category, limits in self.scores.category_thresholds.items():
            value = categories.get(category, 0.0)
            for action in _THRESHOLD_ACTIONS:
                if action in limits and value >= limits[action]:
                    candidates.append((action, category, f"{category} score {value:.2f} "
                                       f">= {action} threshold {limits[action]:g}"))
                    break
        for action in _THRESHOLD_ACTIONS:
            if action in self.scores.totals and total >= self.scores.totals[action]:
                candidates.append((action, _largest_category(categories),
                                   f"total score {total:.2f} >= {action} "
                                   f"threshold {self.scores.totals[action]:g}"))
                break
        blocked = _sender_matches(self.settings.block_senders, sender) if sender else None
        if blocked:
            candidates.append((Action.REJECT, Category.POLICY,
                               f"sender {sender} is on the block list ({blocked})"))

        # The strictest rule chooses the action. The category decides who may
        # release the message and what the reply says, so the most dangerous one
        # that is significant names the verdict, whichever rule chose the action.
        action, category, reason = Action.DELIVER, None, "no rule reached"
        for candidate in candidates:
            if (candidate[0].rank, _SEVERITY.get(candidate[1], 0)) > (
                    action.rank, _SEVERITY.get(category, 0)):
                action, category, reason = candidate
        dangerous = _dangerous_category(categories, self.scores.category_thresholds)
        if action.rank > 0 and _SEVERITY.get(dangerous, 0) > _SEVERITY.get(category, 0):
            category = dangerous
        if (self.settings.tag_external and action == Action.DELIVER
                and any(f.symbol == "EXTERNAL_SENDER" for f in scored)):
            action, category, reason = Action.TAG, Category.POLICY, "external sender"
        allowed = _sender_matches(self.settings.allow_senders, sender) if sender else None
        if allowed is None:
            # A symbol that forces "deliver" allow-lists the message, like the list above.
            allowed = next((f.detail or f.symbol for f in scored
                            if self.scores.rule(f.symbol).action == Action.DELIVER), None)
        if allowed and not blocked and action.rank > 0 and category != Category.MALWARE:
            if authenticated:
                reason = f"sender {sender} is on the allow list ({allowed}); was: {reason}"
                action, category = Action.DELIVER, None
            else:
                reason += (f"; the allow list ({allowed}) is not applied: the From address "
                           "is not authenticated (no DMARC pass)")
        return Verdict(action=action, score=total, reason=reason, findings=scored,
                       categories=categories, category=category,
                       reject_text=_reject_text(category, scored))


_SEVERITY = {Category.MALWARE: 5, Category.PHISH: 4, Category.IMPOSTOR: 3, Category.SPAM: 2,
             Category.AUTH: 1, Category.POLICY: 1}


def _dangerous_category(
        categories: dict[str, float],
        thresholds: dict[Category, dict[Action, float]]) -> Category | None:
    """_dangerous_category - the most dangerous category whose findings are significant.

    A dangerous category (malware, phish, impostor) is significant when its
    own score reaches its lowest threshold, however small it is beside the
    spam score: a phishing message also reads as spam to the spam model, a
    spam run may carry a macro dropper, and what a message is held as
    decides who may release it. Scores of other categories (a spam model
    that says ham) neither add to it nor take from it.
    """
    for category in (Category.MALWARE, Category.PHISH, Category.IMPOSTOR):
        limits = thresholds.get(category)
        if limits and categories.get(category, 0.0) >= min(limits.values()):
            return category
    return None


def _largest_category(categories: dict[str, float]) -> Category | None:
    """_largest_category - the category with the most points, sender auth aside."""
    positive = {k: v for k, v in categories.items() if v > 0 and k != Category.AUTH}
    if not positive:
        return None
    return Category(max(positive, key=positive.__getitem__))


def _reject_text(category: Category | None, scored: list[ScoredFinding]) -> str:
    symbols = [f.symbol for f in sorted(scored, key=lambda f: -f.score) if f.score > 0][:3]
    what = {Category.MALWARE: "malware", Category.PHISH: "phishing",
            Category.SPAM: "spam", Category.IMPOSTOR: "impersonation",
            Category.AUTH: "failed sender authentication",
            Category.POLICY: "local policy"}.get(category, "local policy")
    return f"Message rejected as {what} ({', '.join(symbols) or 'policy'})"
