"""Social-engineering language: the pressure a phishing text puts on a reader.

Two parts. The cues are phrases, in English, German, French and Spanish,
of the levers social engineering pulls: urgency, authority, a threat of
loss, a reward, a request for credentials, a request for payment, and
secrecy. Each lever found is one finding whose evidence is the phrases that
triggered it, so a reader of the verdict sees why. The model is a text
classifier (phishing against ham, and against spam when given: it names
phishing, not unwanted mail) that a site trains on its own mail with
``mailward train --phishing DIR --ham DIR [--spam DIR]``; no model ships with the
package, because the only public phishing set we measured on forbids
commercial use. Without a model the cues alone speak.

SECURITY: the text is hostile; only the bounded prefix the classifiers read
is searched, the patterns have no nested repetition, and at most a few
phrases are kept per cue.

Speed: every phrase begins a word, so a pattern can only match where a word
of the text begins with one of the few beginnings its phrases allow. Those
beginnings are worked out once from the patterns; a text is split into the
beginnings of its words once, only the patterns that could match run, and
each runs only where one of its beginnings occurs, not along the whole text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from mailward.content.features import MAX_TEXT, TEXT, reading_tokens
from mailward.content.model import Bag, LinearModel, load_configured, reading_bag
from mailward.message import Message
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

# TODO: without the embeddings extra (content.embedding) the hashed text model alone
# judges the words, and misses paraphrased lures written in words it never saw.
MAX_PHRASES = 5
MAX_LOG_ODDS = 10.0
# Below this many words a text gives the model too little to judge: a few
# words carry the whole (normalised) weight and the guess is noise.
MIN_WORDS = 20
_WORDS = re.compile(r"\w+")

# Each cue: language -> phrases (regular expressions, matched case-blind on
# word boundaries). Short, common words are kept out: a cue must be a lever.
CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "urgency": {
        "en": (r"urgent(?:ly)?", r"immediately", r"right away", r"as soon as possible",
               r"within (?:the next )?\d+ ?(?:hours?|hrs?|days?)", r"expires? today",
               r"(?:final|last) (?:notice|warning|reminder|chance)", r"act now",
               r"time[- ]sensitive", r"before it(?:'s| is) too late", r"without delay",
               r"today only", r"deadline"),
        "de": (r"dringend", r"sofort", r"umgehend", r"unverzüglich",
               r"innerhalb von \d+ (?:stunden|tagen)", r"letzte (?:mahnung|warnung|erinnerung)",
               r"läuft heute ab", r"so schnell wie möglich", r"frist"),
        "fr": (r"urgent(?:e)?", r"immédiatement", r"sans délai", r"dès que possible",
               r"dans les \d+ (?:heures|jours)", r"dernier (?:avis|rappel|avertissement)",
               r"expire aujourd'hui", r"au plus vite"),
        "es": (r"urgente", r"inmediatamente", r"de inmediato", r"cuanto antes",
               r"en las próximas \d+ horas", r"(?:último|ultimo) aviso", r"sin demora",
               r"lo antes posible", r"vence hoy"),
    },
    "authority": {
        "en": (r"(?:it|security|support|technical|billing|compliance) (?:team|department|desk)",
               r"help ?desk", r"(?:system|mail|email|account) administrator",
               r"(?:ceo|cfo|chief executive|managing director)", r"internal revenue service",
               r"tax (?:office|authority)", r"fraud (?:department|prevention)", r"police"),
        "de": (r"it-abteilung", r"sicherheitsteam", r"(?:system)?administrator",
               r"geschäftsführ(?:er|ung)", r"vorstand", r"finanzamt", r"polizei"),
        "fr": (r"service (?:informatique|technique|client|de sécurité)",
               r"équipe (?:de sécurité|technique)", r"administrateur",
               r"directeur général", r"pdg", r"impots\.gouv|impôts", r"police"),
        "es": (r"departamento de (?:ti|sistemas|seguridad)", r"equipo de seguridad",
               r"administrador", r"director general", r"agencia tributaria", r"policía"),
    },
    "threat": {
        "en": (r"(?:will|would|has been|have been|be) (?:suspended|closed|locked|deleted|"
               r"terminated|deactivated|disabled|blocked|restricted)",
               r"unauthori[sz]ed (?:access|activity|login|sign-in)",
               r"suspicious (?:activity|login|sign-in)", r"legal action", r"lose (?:access|all)",
               r"permanently (?:deleted|lost|removed)", r"penalt(?:y|ies)"),
        "de": (r"gesperrt", r"gelöscht", r"deaktiviert", r"eingeschränkt",
               r"rechtliche schritte", r"unbefugte[rn]? zugriff", r"verdächtige aktivität"),
        "fr": (r"suspendu(?:e)?", r"bloqué(?:e)?", r"supprimé(?:e)?", r"désactivé(?:e)?",
               r"poursuites", r"accès non autorisé", r"activité suspecte"),
        "es": (r"suspendid[ao]", r"bloquead[ao]", r"eliminad[ao]", r"desactivad[ao]",
               r"acciones legales", r"acceso no autorizado", r"actividad sospechosa"),
    },
    "reward": {
        "en": (r"you(?:'ve| have)? (?:won|been selected)", r"winner", r"prize", r"lottery",
               r"inheritance", r"(?:million|thousand) (?:dollars|usd|euros|pounds)",
               r"claim your", r"refund", r"cash ?back", r"free gift", r"compensation"),
        "de": (r"gewonnen", r"gewinner", r"gewinn", r"erbschaft", r"rückerstattung",
               r"gutschein", r"entschädigung"),
        "fr": (r"vous avez gagné", r"gagnant", r"héritage", r"remboursement", r"carte cadeau",
               r"loterie", r"indemnisation"),
        "es": (r"ha ganado", r"ganador", r"premio", r"herencia", r"reembolso",
               r"tarjeta de regalo", r"lotería", r"indemnización"),
    },
    "credential_request": {
        "en": (r"(?:verify|confirm|validate|update|reactivate|unlock) (?:your )?"
               r"(?:account|identity|password|mailbox|email|login|credentials|details)",
               r"(?:enter|provide|re-?enter) your (?:password|credentials|login|pin)",
               r"(?:reset|change|keep) (?:your )?(?:current )?password",
               r"password (?:expires?|expired|expiration)", r"sign in to (?:your|continue)",
               r"log ?in to (?:your|continue)"),
        "de": (r"(?:bestätigen|verifizieren|aktualisieren) sie ihr(?:e|en)? "
               r"(?:konto|identität|passwort|daten|zugangsdaten)",
               r"passwort (?:läuft|ist) (?:ab|abgelaufen)", r"anmeldedaten", r"zugangsdaten",
               r"kennwort"),
        "fr": (r"(?:vérifiez|confirmez|validez|mettez à jour) (?:votre|vos) "
               r"(?:compte|identité|mot de passe|informations|identifiants)",
               r"mot de passe (?:expire|a expiré)", r"identifiants"),
        "es": (r"(?:verifique|confirme|valide|actualice) (?:su|sus) "
               r"(?:cuenta|identidad|contraseña|datos|credenciales)",
               r"contraseña (?:caduca|ha caducado|expira)", r"credenciales"),
    },
    "payment_request": {
        "en": (r"wire transfer", r"bank transfer", r"(?:bank|banking|account|payment) details",
               r"gift ?cards?", r"bitcoin|btc wallet", r"western union|moneygram",
               r"(?:outstanding|overdue|pending) (?:payment|invoice|balance)",
               r"(?:make|send|process) (?:a |the )?payment", r"processing fee"),
        "de": (r"überweisung", r"bankverbindung", r"bankdaten", r"ausstehende (?:zahlung|rechnung)",
               r"zahlung (?:leisten|veranlassen)", r"geschenkkarten?"),
        "fr": (r"virement", r"coordonnées bancaires", r"(?:paiement|facture) en attente",
               r"effectuer (?:le|un) paiement", r"cartes? cadeaux?"),
        "es": (r"transferencia (?:bancaria)?", r"datos bancarios", r"pago pendiente",
               r"factura pendiente", r"realizar (?:el|un) pago", r"tarjetas? de regalo"),
    },
    "secrecy": {
        "en": (r"strictly confidential", r"keep (?:this|it) (?:between us|confidential|private)",
               r"do(?:n't| not) (?:tell|discuss|share|mention)", r"discreet(?:ly)?",
               r"(?:private|confidential) matter"),
        "de": (r"streng vertraulich", r"unter uns", r"diskret", r"niemandem"),
        "fr": (r"strictement confidentiel", r"entre nous", r"en toute discrétion",
               r"n'en parlez"),
        "es": (r"estrictamente confidencial", r"entre nosotros", r"con discreción",
               r"no lo comente"),
    },
}

SYMBOLS = {f"LANG_{cue.upper()}": f"social-engineering cue: {cue.replace('_', ' ')}"
           for cue in CUES}
SYMBOLS["LANG_MANY_CUES"] = "three or more social-engineering cues together"
SYMBOLS["LANG_PHISH_MODEL"] = "the language model finds the text likely phishing (weight: log-odds)"
SYMBOLS["LANG_BRAND_IMPERSONATION"] = ("the message speaks as a known brand and asks for "
                                       "credentials, from a domain the brand does not own")

# A brand counts when it is named where a reader looks first, beside a request
# for credentials in its name; a mention further down is news, not a costume
# (a threat cue alone, "will be blocked", is too common in ordinary mail).
BRAND_SPAN = 300
BRAND_CUES = frozenset({"credential_request"})
MIN_BRAND = 4


def _compile(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(phrases) + r")(?!\w)", re.IGNORECASE)


_PATTERNS = {cue: {language: _compile(phrases) for language, phrases in by_language.items()}
             for cue, by_language in CUES.items()}

# How many characters from the start of a word the prefilter compares.
HEAD = 8
_WORD_CHAR = re.compile(r"\w")
# The first HEAD characters of each word.
_WORD_HEAD = re.compile(r"(\w{1,%d})\w*" % HEAD)
_LEADING_WORD = re.compile(r"\w*")
# re.IGNORECASE compares the one-character lower case of both sides and holds
# dotless i and long s equal to i and s; str.lower() agrees except that it
# turns dotted capital I into two characters. Folding these three first keeps
# the folded text aligned with the original and equal where re finds it equal.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def fold(text: str) -> str:
    """fold - the text in the case re.IGNORECASE compares, one char for one."""
    return text.translate(_FOLD).lower()


class _Unbounded(Exception):
    """A pattern whose beginnings are not a small finite set."""


@dataclass(frozen=True, slots=True)
class Heads:
    """What a match of a pattern must begin with, or be, one of them at least.

    ``windows``: the first HEAD characters of the match. ``words``: a whole
    word the match begins with (shorter than HEAD), where the pattern goes
    on past it in ways not enumerated or ends with it. ``whole``: a whole
    match shorter than HEAD that spans more than one word.
    """

    windows: frozenset[str]
    words: frozenset[str]
    whole: frozenset[str]


class _Starts:
    """Where in a folded text a match of a pattern can start, from its Heads.

    A text's words are known by their first HEAD characters (``heads``). A
    window made of word characters only is the beginning of a word, so it
    can start a match only if it is one of those; a word of ``words`` too.
    A window or whole match that goes past its first word needs that word
    whole, so only when that word is there is the text searched for it.
    """

    __slots__ = ("known", "led")

    def __init__(self, heads: Heads) -> None:
        known = set(heads.words)
        led: dict[str, list[str]] = {}
        for text in sorted(heads.windows | heads.whole):
            word = _LEADING_WORD.match(text).group(0)
            if word == text:
                known.add(text)
            else:
                led.setdefault(word, []).append(text)
        self.known = frozenset(known)
        self.led = {word: tuple(texts) for word, texts in led.items()}

    def positions(self, folded: str, heads: set[str]) -> list[int]:
        """positions - where a match may start, in order: a superset, maybe empty."""
        wanted = list(self.known.intersection(heads))
        for word, texts in self.led.items():
            if word in heads:
                wanted.extend(texts)
        found: set[int] = set()
        for text in wanted:
            at = folded.find(text)
            while at >= 0:
                found.add(at)
                at = folded.find(text, at + 1)
        return sorted(found)


def _cut(head: str, at_end: bool) -> tuple[str, str]:
    """_cut - a beginning that stops short of HEAD, as (kind, text) for Heads."""
    word = _LEADING_WORD.match(head).group(0)
    if word and at_end:
        # The pattern ends here, and (?!\w) comes after it.
        return ("words", head) if word == head else ("whole", head)
    if 0 < len(word) < len(head):
        return ("words", word)  # the pattern follows it with a non-word character
    raise _Unbounded


def _heads(items: list, head: str) -> set[tuple[str, str]]:
    """_heads - the folded beginnings a parsed pattern can match, as _cut says."""
    from re import _constants as sre

    if len(head) >= HEAD:
        return {("windows", head[:HEAD])}
    if not items:
        return {_cut(head, True)}
    (op, arg), rest = items[0], items[1:]
    if op is sre.LITERAL:
        char = fold(chr(arg))
        if not head and not _WORD_CHAR.fullmatch(char):
            raise _Unbounded
        return _heads(rest, head + char)
    if op is sre.SUBPATTERN and not arg[1] and not arg[2]:
        return _heads(list(arg[3]) + rest, head)
    if op is sre.BRANCH:
        return set().union(*(_heads(list(alt) + rest, head) for alt in arg[1]))
    if op is sre.MAX_REPEAT and arg[0] == 0 and arg[1] == 1:
        return _heads(rest, head) | _heads(list(arg[2]) + rest, head)
    if op is sre.IN and all(kind is sre.LITERAL for kind, _ in arg):
        return set().union(*(_heads([(sre.LITERAL, c)] + rest, head) for _, c in arg))
    return {_cut(head, False)}


def phrase_heads(phrases: tuple[str, ...]) -> Heads | None:
    """phrase_heads - what a match of the phrases must begin with, or None.

    None (the pattern always runs) when that cannot be worked out.
    """
    try:
        from re import _parser

        found = _heads(list(_parser.parse("|".join(phrases), re.IGNORECASE)), "")
    except (ImportError, AttributeError, _Unbounded, RecursionError):
        return None
    return Heads(*(frozenset(text for kind, text in found if kind == wanted)
                   for wanted in ("windows", "words", "whole")))


_PREFILTER = {cue: {language: phrase_heads(phrases)
                    for language, phrases in by_language.items()}
              for cue, by_language in CUES.items()}
_POSITIONS = {cue: {language: None if heads is None else _Starts(heads)
                    for language, heads in by_language.items()}
              for cue, by_language in _PREFILTER.items()}


@dataclass(frozen=True, slots=True)
class Cue:
    """One lever found: its name, the phrases and the languages they were in."""

    name: str
    phrases: tuple[str, ...]
    languages: tuple[str, ...]


def reader_text(message: Message) -> str:
    """reader_text - subject and the bounded prefix of the text a reader sees."""
    return message.subject[:500] + "\n" + message.text[:MAX_TEXT]


def _matches(pattern: re.Pattern[str], text: str, positions: list[int]) -> list[str]:
    """_matches - what ``finditer`` finds, tried only at positions (in order)."""
    hits: list[str] = []
    end = 0
    for at in positions:
        if at >= end:
            match = pattern.match(text, at)
            if match is not None:
                hits.append(match.group(0).lower())
                end = match.end()
    return hits


def find_cues(text: str, prefilter: bool = True) -> list[Cue]:
    """find_cues - the social-engineering levers in a text, with their phrases.

    ``prefilter=False`` runs every pattern; the result is the same, slower.
    """
    folded = fold(text) if prefilter else ""
    heads = set(_WORD_HEAD.findall(folded))
    found: list[Cue] = []
    for cue, by_language in _PATTERNS.items():
        phrases: dict[str, None] = {}
        languages: list[str] = []
        for language, pattern in by_language.items():
            starts = _POSITIONS[cue][language]
            if prefilter and starts is not None:
                hits = _matches(pattern, text, starts.positions(folded, heads))
            else:
                hits = [m.group(0).lower() for m in pattern.finditer(text)]
            if hits:
                languages.append(language)
                phrases.update(dict.fromkeys(hits))
        if phrases:
            found.append(Cue(cue, tuple(list(phrases)[:MAX_PHRASES]), tuple(languages)))
    return found


def cue_findings(cues: list[Cue]) -> list[Finding]:
    """cue_findings - one finding per lever, the phrases as evidence."""
    findings = [Finding(f"LANG_{cue.name.upper()}", Category.PHISH,
                        "phrases: " + ", ".join(repr(p) for p in cue.phrases),
                        data={"phrases": list(cue.phrases), "languages": list(cue.languages)})
                for cue in cues]
    if len(cues) >= 3:
        findings.append(Finding("LANG_MANY_CUES", Category.PHISH,
                                "cues: " + ", ".join(c.name for c in cues)))
    return findings


class Brands:
    """The known brands (``urls.lists_file``) by name, and the domains each owns."""

    def __init__(self, brands: dict[str, tuple[str, ...]]) -> None:
        from mailward.urls.heuristics import registrable

        self.owned = {name: frozenset(registrable(d) for d in domains)
                      for name, domains in brands.items() if len(name) >= MIN_BRAND}
        names = sorted(self.owned, key=len, reverse=True)
        self.pattern = (re.compile(r"(?<!\w)(" + "|".join(map(re.escape, names)) + r")(?!\w)",
                                   re.IGNORECASE) if names else None)

    def impersonated(self, message: Message, cues: list[Cue]) -> Finding | None:
        """impersonated - the finding when the message wears a brand it is not sent by."""
        from mailward.urls.heuristics import registrable

        if self.pattern is None or not BRAND_CUES & {cue.name for cue in cues}:
            return None
        sender = message.from_lenient  # a score, never trust: a malformed From counts
        if sender is None or not sender.domain:
            return None
        shown = f"{sender.display_name}\n{message.subject[:200]}\n{message.text[:BRAND_SPAN]}"
        domain = registrable(sender.domain.lower())
        for match in self.pattern.finditer(shown):
            name = match.group(1).lower()
            if domain not in self.owned[name]:
                return Finding("LANG_BRAND_IMPERSONATION", Category.PHISH,
                               f"speaks as {name} ({match.group(1)!r}) from {domain}",
                               data={"brand": name, "domain": domain})
        return None


def cue_tokens(cues: list[Cue]) -> list[str]:
    """cue_tokens - the strings of the cues, read besides ``reading_tokens``."""
    return ["cue:" + cue.name for cue in cues]


def language_tokens(message: Message, cues: list[Cue] | None = None) -> list[str]:
    """language_tokens - what the language model sees: the words and the cues."""
    if cues is None:
        cues = find_cues(reader_text(message))
    return reading_tokens(message) + cue_tokens(cues)


def language_model_path(services: Services) -> Path:
    configured = services.settings.spam.language_model
    return Path(configured) if configured else services.data_dir / "language-model.npz"


def load_language_model(services: Services) -> LinearModel | None:
    """load_language_model - the site's language model, or None (cues only)."""
    return load_configured(language_model_path(services), "spam.language_model",
                           services.settings.spam.language_model)


def _enough_words(text: str) -> bool:
    count = 0
    for _ in _WORDS.finditer(text, 0, 4000):
        count += 1
        if count >= MIN_WORDS:
            return True
    return False


# TODO: the model has no notion of how much of a text it knows; a legitimate text in
# words it never saw scores near its intercept, which after training on a small or
# narrow ham set leans to phishing, so such mail can be flagged until the site trains
# on more of its own ham.
class LanguageCheck:
    """Social-engineering cues, and the site's language model if trained."""

    name: ClassVar[str] = "language"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = SYMBOLS

    def __init__(self, cues: bool, model: LinearModel | None,
                 brands: Brands | None = None) -> None:
        self.cues = cues
        self.model = model
        self.brands = brands

    @classmethod
    def from_services(cls, services: Services) -> "LanguageCheck | None":
        from mailward.urls.heuristics import load_lists

        model = load_language_model(services)
        if not services.settings.spam.language_cues and model is None:
            return None
        brands = Brands(load_lists(services.settings.urls.lists_file).brands)
        return cls(services.settings.spam.language_cues, model, brands)

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        cues = find_cues(reader_text(task.message))
        findings = cue_findings(cues) if self.cues else []
        if self.cues and self.brands is not None:
            costume = self.brands.impersonated(task.message, cues)
            if costume is not None:
                findings.append(costume)
        if self.model is not None and _enough_words(task.message.text):
            bag = reading_bag(task.scratch, task.message) + Bag.of_runs(
                [(cue_tokens(cues), TEXT)])
            raw = self.model.raw(bag)
            log_odds = min(MAX_LOG_ODDS, self.model.log_odds(raw))
            if log_odds > 0:
                probability = 1.0 / (1.0 + math.exp(-log_odds))
                findings.append(Finding("LANG_PHISH_MODEL", Category.PHISH,
                                        f"phishing probability {probability:.4f}",
                                        weight=log_odds))
        return findings
