"""Impostor (BEC) detection: mail that borrows a trusted identity to ask for money.

Business email compromise rarely carries a link or a file; it carries a
borrowed name and a request. This check looks at who the message claims to
be and what it asks, each signal a finding with its evidence:

- identity: the display name of a protected person (``content.vip``) on an
  address outside our domains; a From or Reply-To domain that imitates a
  protected domain (our accepted domains and ``impostor.partner_domains``:
  confusable skeletons of UTS #39, punycode, one or two edits, another
  suffix, added, dropped or swapped labels); an address written inside the
  display name that is not the real one; a free-mail sender using our
  organisation's name or a role; a protected domain in From without aligned
  authentication;
- divergence: Reply-To or the envelope sender (Return-Path) on another
  organisation than From;
- context: first contact (no earlier mail between the sender and the
  recipients in the message index) and no aligned authentication (from the
  DMARC findings);
- the request: payment, wire transfer, gift cards, bank-detail or payroll
  changes, urgency, secrecy, a "quick task", in several languages.

Context and request signals only count when an identity signal fired: a
newsletter asking to pay an invoice is not an impostor, a stranger wearing
the CFO's name who asks for one is. Scores and the impostor category's
thresholds are in the scores file.

The sender is the lenient reading of From (``Message.from_lenient``): a
single malformed From still shows its reader a name and an address, and
breaking the header must not take the disguise out of view. Several From
headers give no sender and no impostor findings.

SECURITY: every input is attacker-written; texts are searched within
``impostor.max_text`` characters with linear-time patterns, and the index
look-up is bounded.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import ClassVar

from rapidfuzz.distance import OSA
from sqlalchemy import or_, select

from mailward.content.external import is_own_domain
from mailward.content.vip import Person, fold, load_people, matches
from mailward.message import Mailbox, Message
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.store.models import MessageRecord
from mailward.urls.heuristics import registrable, skeleton, to_unicode
from mailward.verdict import Category, Finding

_EMBEDDED_ADDRESS = re.compile(r"[A-Za-z0-9._%+'-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")
_LIST_HEADERS = ("list-id", "list-post", "list-unsubscribe", "mailing-list", "x-mailing-list")
_INDEX_ROWS = 500
# Signals that say the sender is dressed as someone it is not.
STRONG = frozenset({"IMPOSTOR_DISPLAY_NAME", "IMPOSTOR_LOOKALIKE_DOMAIN",
                    "IMPOSTOR_LOOKALIKE_SUFFIX",
                    "IMPOSTOR_REPLY_TO_LOOKALIKE", "IMPOSTOR_ADDRESS_IN_NAME",
                    "IMPOSTOR_FREEMAIL_CORPORATE", "IMPOSTOR_PROTECTED_UNALIGNED",
                    "IMPOSTOR_REPLY_TO_FREEMAIL"})


# The request: phrases by family, several languages each (en, de, fr, es, it, nl, pt).
CUES: dict[str, tuple[str, ...]] = {
    "IMPOSTOR_PAYMENT_REQUEST": (
        r"wire transfer", r"bank transfer",
        r"(?:make|process|send|release|arrange) (?:a |the |an )?(?:urgent )?(?:payment|wire|transfer)",
        r"pay (?:the|this|an|these) (?:invoice|vendor|supplier)s?",
        r"outstanding invoice",
        r"payment (?:to|of) (?:the )?(?:vendor|supplier|attached)",
        r"swift (?:code|transfer)", r"überweisung",
        r"zahlung (?:veranlassen|freigeben|ausführen)",
        r"rechnung (?:bezahlen|begleichen)", r"virement",
        r"effectuer (?:un|le) paiement", r"régler (?:la|cette) facture",
        r"transferencia (?:bancaria|urgente)", r"realizar (?:un|el) pago",
        r"pagar (?:la|esta) factura", r"bonifico", r"effettuare (?:un|il) pagamento",
        r"overboeking", r"betaling (?:uitvoeren|doen)", r"transferência (?:bancária)?",
        r"efetuar (?:o|um) pagamento",
    ),
    "IMPOSTOR_GIFT_CARDS": (
        r"gift ?cards?",
        r"(?:itunes|apple|google play|amazon|steam|ebay|visa) (?:gift )?cards?",
        r"scratch (?:off )?the (?:back|code)", r"(?:card|claim) codes?",
        r"geschenkkarten?", r"gutscheinkarten?", r"cartes? cadeaux?",
        r"tarjetas? (?:de )?regalo", r"carte regalo", r"buoni regalo",
        r"cadeaukaart(?:en)?", r"cadeaubon(?:nen)?", r"cartões? (?:de )?presente",
        r"vale[- ]presente",
    ),
    "IMPOSTOR_BANK_CHANGE": (
        r"(?:change|update|changed|updated|new) (?:of |to |in )?(?:our |my |the )?(?:bank(?:ing)?|account|payment|remittance) (?:details|information|info|account)",
        r"new (?:bank )?account (?:number|details)", r"direct deposit",
        r"payroll (?:details|account|change|information)",
        r"(?:change|update) (?:my |the )?payroll",
        r"salary (?:account|payment) (?:change|details)",
        r"(?:neue|geänderte) bankverbindung",
        r"kontoverbindung (?:geändert|ändern|aktualisieren)",
        r"nouvelles? coordonnées bancaires",
        r"changement de (?:rib|coordonnées bancaires)", r"nouveau rib",
        r"(?:nuevos|cambio de) datos bancarios", r"nueva cuenta bancaria",
        r"nuove coordinate bancarie", r"nuovo iban",
        r"nieuwe (?:bankgegevens|rekeningnummer|iban)", r"novos dados bancários",
        r"nova conta bancária",
    ),
    "IMPOSTOR_URGENCY": (
        r"urgent(?:ly)?", r"\basap\b", r"immediately", r"right away",
        r"by (?:the )?end of (?:the )?day", r"within the (?:next )?hour",
        r"as soon as possible", r"today without fail", r"dringend", r"sofort",
        r"umgehend", r"heute noch", r"urgence", r"immédiatement", r"au plus vite",
        r"urgente", r"inmediatamente", r"lo antes posible", r"subito",
        r"immediatamente", r"met spoed", r"onmiddellijk", r"o mais rápido possível",
    ),
    "IMPOSTOR_SECRECY": (
        r"confidential", r"keep (?:this|it) (?:between us|to yourself|quiet)",
        r"(?:do not|don't) (?:tell|discuss|share|mention)", r"discreet(?:ly)?",
        r"(?:in|going into) a (?:meeting|conference)",
        r"can(?:'|no)t (?:talk|take calls)", r"vertraulich", r"unter uns", r"diskret",
        r"confidentiel(?:le)?", r"entre nous", r"confidencial", r"entre nosotros",
        r"riservat[oa]", r"tra di noi", r"vertrouwelijk", r"tussen ons",
        r"sigilo(?:so)?",
    ),
    "IMPOSTOR_TASK_REQUEST": (
        r"are you (?:available|at your desk|in the office|around)",
        r"(?:quick|small|urgent) (?:task|favou?r|errand)", r"i need you to",
        r"(?:send|reply with) (?:me )?your (?:cell|mobile|whatsapp)",
        r"bist du (?:verfügbar|erreichbar|im büro)", r"kleinen gefallen",
        r"êtes-vous disponible", r"es-tu disponible", r"petit service",
        r"¿?estás disponible", r"pequeño favor", r"sei disponibile", r"piccolo favore",
        r"ben je beschikbaar", r"está disponível",
    ),
}


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(patterns) + r")(?!\w)", re.IGNORECASE)


_CUE_PATTERNS = {symbol: _compile(patterns) for symbol, patterns in CUES.items()}
_ROLE_WORDS = re.compile(r"(?<!\w)(?:ceo|cfo|coo|cto|president|chairman|chairwoman|director|"
                         r"managing director|finance|accounts payable|accounting|payroll|"
                         r"treasury|human resources|hr department|geschäftsführer|"
                         r"directeur|directora?|presidente)(?!\w)", re.IGNORECASE)


def free_mail_domains() -> frozenset[str]:
    """free_mail_domains - the shipped list of free webmail domains."""
    text = resources.files("mailward").joinpath("data/freemail.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


# Lookalike domains.


@dataclass(frozen=True, slots=True)
class Lookalike:
    target: str
    how: str
    # The same name under another suffix: as often the organisation's own
    # sibling domain or an unrelated namesake as an impostor's, so it weighs less.
    weak: bool = False


def _split(domain: str) -> tuple[str, str]:
    """_split - (label, suffix) of a registrable domain: ("paypal", "co.uk")."""
    label, _, suffix = domain.partition(".")
    return label, suffix


def lookalike(domain: str, protected: list[str]) -> Lookalike | None:
    """lookalike - the protected domain this one imitates, and how; or None.

    Compared on registrable domains; a domain that is (or is under) a
    protected domain is never a lookalike of it.
    """
    domain = domain.lower().rstrip(".")
    if not domain or any(domain == p or domain.endswith("." + p) for p in protected):
        return None
    own = registrable(domain)
    label, suffix = _split(to_unicode(own))
    host = to_unicode(domain)
    for target in protected:
        base = registrable(target)
        t_label, t_suffix = _split(base)
        if len(t_label) < 4:
            continue
        if own == base:
            continue
        dashed = t_label + "-" + t_suffix.replace(".", "-")
        if host.startswith(base + ".") or host.startswith(dashed):
            return Lookalike(target, f"{base} written as labels of {own}")
        if label == t_label:
            return Lookalike(target, f"same name under another suffix (.{suffix})", weak=True)
        if not label.isascii() and skeleton(label) == skeleton(t_label):
            written = own.encode("idna").decode() if _idna_ok(own) else own
            return Lookalike(target, f"confusable letters ({written})")
        if skeleton(label) == skeleton(t_label):
            return Lookalike(target, "look-alike letters (rn/m, 1/l, 0/o)")
        limit = 1 if len(t_label) < 9 else 2
        distance = OSA.distance(label, t_label, score_cutoff=limit + 1)
        if distance <= limit:
            return Lookalike(target, f"{distance} letter(s) changed")
        pieces, t_pieces = label.split("-"), t_label.split("-")
        if len(pieces) > 1 and sorted(pieces) == sorted(t_pieces):
            return Lookalike(target, "labels swapped")
        if t_label in pieces or (len(t_label) >= 5 and _affixed(label, t_label)):
            return Lookalike(target, f"{t_label} with words added")
    return None


def _affixed(label: str, target: str) -> bool:
    """_affixed - target with a short word glued before or after it."""
    if label.startswith(target) or label.endswith(target):
        return 0 < len(label) - len(target) <= 8
    return False


def _idna_ok(domain: str) -> bool:
    try:
        domain.encode("idna")
        return True
    except UnicodeError:
        return False


_MAX_REPLY_TO = 8192
_ANGLED = re.compile(r"<([^<>@\s]{1,64}@[^<>@\s]{1,253})>")


def _reply_to(message: Message) -> list[Mailbox]:
    """_reply_to - the first Reply-To mailboxes; a huge header is read by its <addresses>."""
    raw = " ".join(value for name, value in message.raw_headers
                   if name.lower() == "reply-to")
    if len(raw) <= _MAX_REPLY_TO:
        return message.addresses("reply-to")[:5]
    return [Mailbox("", address) for address in _ANGLED.findall(raw[:_MAX_REPLY_TO])[:5]]


def _org(domain: str) -> str:
    return registrable(domain.lower()) if domain else ""


# The check.


class ImpostorCheck:
    """Identity signals, divergence, context and the request of one message."""

    name: ClassVar[str] = "impostor"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ("dmarc",)
    symbols: ClassVar[dict[str, str]] = {
        "IMPOSTOR_DISPLAY_NAME": "the display name is a protected person's, on an outside address",
        "IMPOSTOR_LOOKALIKE_DOMAIN": "the From domain imitates a protected domain",
        "IMPOSTOR_LOOKALIKE_SUFFIX": "the From domain is a protected name under another suffix",
        "IMPOSTOR_REPLY_TO_LOOKALIKE": "the Reply-To domain imitates a protected domain",
        "IMPOSTOR_ADDRESS_IN_NAME": "the display name shows a protected address that is not the sender's",
        "IMPOSTOR_ADDRESS_IN_NAME_OTHER": "the display name shows another organisation's address",
        "IMPOSTOR_FREEMAIL_CORPORATE": "a free-mail sender uses the organisation's name or a role",
        "IMPOSTOR_PROTECTED_UNALIGNED": "From is a protected domain without aligned authentication",
        "IMPOSTOR_REPLY_TO_DIFFERS": "replies go to another organisation than From",
        "IMPOSTOR_REPLY_TO_FREEMAIL": "replies go to a free-mail address while From is not one",
        "IMPOSTOR_RETURN_PATH_DIFFERS": "the envelope sender is another organisation than From",
        "IMPOSTOR_FIRST_CONTACT": "no earlier mail between this sender and the recipients",
        "IMPOSTOR_NO_ALIGNED_AUTH": "no SPF or DKIM result aligned with the From domain",
        **{symbol: f"the text asks for: {symbol.removeprefix('IMPOSTOR_').lower().replace('_', ' ')}"
           for symbol in CUES},
    }

    def __init__(self, accepted: list[str], partners: list[str], org_names: list[str],
                 free_mail: frozenset[str], max_text: int, refresh: float = 5.0,
                 lookback: float = 365 * 86400) -> None:
        self.accepted = [d.lower() for d in accepted]
        self.partners = [d.lower() for d in partners]
        self.protected = list(dict.fromkeys(registrable(d.removeprefix("*."))
                                            for d in self.accepted + self.partners))
        self.org_names = [fold(n) for n in org_names if len(n) >= 4]
        self.free_mail = free_mail
        self.max_text = max_text
        self.refresh = refresh
        self.lookback = lookback
        self.people: list[Person] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @classmethod
    def from_services(cls, services: Services) -> "ImpostorCheck | None":
        settings = services.settings.impostor
        if not settings.enabled:
            return None
        accepted = services.settings.smtp.accepted_domains
        org_names = settings.organisation_names or [
            _split(registrable(d.removeprefix("*.")))[0] for d in accepted]
        free_mail = free_mail_domains() | {d.lower() for d in settings.free_mail_domains}
        return cls(accepted, settings.partner_domains, org_names, frozenset(free_mail),
                   settings.max_text, lookback=settings.first_contact_lookback)

    async def _people(self, task: Task) -> list[Person]:
        """_people - the directory, reloaded from the store every few seconds."""
        async with self._lock:
            if time.monotonic() - self._loaded_at > self.refresh:
                self.people = await load_people(task.services.store)
                self._loaded_at = time.monotonic()
        return self.people

    async def check(self, task: Task) -> list[Finding]:
        message = task.message
        assert message is not None
        # A malformed From is still read (the scoring view, never trusted):
        # attackers break the header on purpose to slip past these checks.
        sender = message.from_lenient
        if sender is None:
            return []
        findings = self.identity(sender, message, await self._people(task))
        findings += self.divergence(sender, message, task.envelope.mail_from)
        findings += self.unaligned(sender, task)
        if not any(f.symbol in STRONG for f in findings):
            return []
        if await self.first_contact(task, sender):
            findings.append(Finding("IMPOSTOR_FIRST_CONTACT", Category.IMPOSTOR,
                                    f"no earlier mail between {sender.address} and "
                                    f"{', '.join(task.envelope.rcpt_to[:5])}"))
        findings += self.request(message)
        return findings

    def _own(self, domain: str) -> bool:
        return bool(self.accepted) and is_own_domain(domain, self.accepted)

    def _protected(self, domain: str) -> bool:
        return self._own(domain) or any(domain == p or domain.endswith("." + p)
                                        for p in self.partners)

    def identity(self, sender: Mailbox, message: Message,
                 people: list[Person]) -> list[Finding]:
        """identity - who the message dresses up as."""
        findings: list[Finding] = []
        domain = sender.domain
        name = sender.display_name[:400]
        for person in people:
            how = matches(person, name)
            if how is None or sender.address.lower() in person.addresses:
                continue
            if self._own(domain) and not person.addresses:
                continue
            findings.append(Finding(
                "IMPOSTOR_DISPLAY_NAME", Category.IMPOSTOR,
                f"display name {name!r} names {person.describe()} ({how}) but the address "
                f"is {sender.address}", data={"person": person.name, "match": how,
                                              "address": sender.address}))
            break
        look = lookalike(domain, self.protected)
        if look:
            symbol = "IMPOSTOR_LOOKALIKE_SUFFIX" if look.weak else "IMPOSTOR_LOOKALIKE_DOMAIN"
            findings.append(Finding(symbol, Category.IMPOSTOR,
                                    f"{domain} looks like {look.target}: {look.how}",
                                    data={"domain": domain, "target": look.target}))
        for shown in _EMBEDDED_ADDRESS.findall(name):
            shown_domain = shown.rpartition("@")[2].lower()
            if _org(shown_domain) == _org(domain):
                continue  # "Tom <tom@example.net>" <list@example.net>: one organisation
            protected = self._protected(shown_domain) or lookalike(shown_domain,
                                                                   self.protected)
            symbol = "IMPOSTOR_ADDRESS_IN_NAME" if protected else "IMPOSTOR_ADDRESS_IN_NAME_OTHER"
            findings.append(Finding(symbol, Category.IMPOSTOR,
                                    f"display name shows {shown} but the address is "
                                    f"{sender.address}", data={"shown": shown}))
            break
        if domain in self.free_mail:
            folded = fold(name)
            corporate = next((n for n in self.org_names if n in folded), None)
            role = _ROLE_WORDS.search(name)
            if corporate or role:
                what = corporate or role.group(0)  # type: ignore[union-attr]
                findings.append(Finding("IMPOSTOR_FREEMAIL_CORPORATE", Category.IMPOSTOR,
                                        f"free-mail address {sender.address} with {what!r} "
                                        f"in the name {name!r}"))
        return findings

    def divergence(self, sender: Mailbox, message: Message, mail_from: str) -> list[Finding]:
        """divergence - replies or bounces going to another organisation."""
        if any(message.header(h) is not None for h in _LIST_HEADERS):
            return []  # mailing lists set Reply-To and Return-Path by design
        findings: list[Finding] = []
        org = _org(sender.domain)
        for reply in _reply_to(message):
            look = lookalike(reply.domain, self.protected)
            if look:
                findings.append(Finding("IMPOSTOR_REPLY_TO_LOOKALIKE", Category.IMPOSTOR,
                                        f"Reply-To {reply.address} looks like {look.target}: "
                                        f"{look.how}", weight=0.5 if look.weak else 1.0))
            elif _org(reply.domain) != org:
                free = reply.domain in self.free_mail and sender.domain not in self.free_mail
                symbol = "IMPOSTOR_REPLY_TO_FREEMAIL" if free else "IMPOSTOR_REPLY_TO_DIFFERS"
                findings.append(Finding(symbol, Category.IMPOSTOR,
                                        f"From {sender.address}, Reply-To {reply.address}"))
            else:
                continue
            break
        envelope_domain = mail_from.rpartition("@")[2].lower()
        if envelope_domain and _org(envelope_domain) != org:
            findings.append(Finding("IMPOSTOR_RETURN_PATH_DIFFERS", Category.IMPOSTOR,
                                    f"From {sender.address}, envelope sender {mail_from}"))
        return findings

    def unaligned(self, sender: Mailbox, task: Task) -> list[Finding]:
        """unaligned - no DMARC-aligned SPF or DKIM, as the DMARC check found it."""
        dmarc = [f for f in task.findings if f.symbol.startswith("DMARC_")
                 and f.symbol != "DMARC_TEMPERROR"]
        if not dmarc or any(f.symbol == "DMARC_PASS" or f.data.get("spf_aligned")
                            or f.data.get("dkim_aligned") for f in dmarc):
            return []
        findings = [Finding("IMPOSTOR_NO_ALIGNED_AUTH", Category.IMPOSTOR,
                            f"{sender.domain}: {dmarc[0].detail}")]
        domain = sender.domain
        if self._protected(domain):
            findings.append(Finding("IMPOSTOR_PROTECTED_UNALIGNED", Category.IMPOSTOR,
                                    f"From claims protected domain {domain} without aligned "
                                    "SPF or DKIM"))
        return findings

    async def first_contact(self, task: Task, sender: Mailbox) -> bool:
        """first_contact - no mail from the sender to a recipient, nor back, in the index.

        TODO: Only mail that passed through this gateway is known; replies our
        users sent by another route do not count as contact, so a partner
        that is only ever written to from elsewhere looks new every time.
        """
        since = task.services.clock() - timedelta(seconds=self.lookback)
        address = sender.address.lower()
        recipients = {r.lower() for r in task.envelope.rcpt_to}
        async with task.services.store.session() as session:
            rows = (await session.execute(
                select(MessageRecord.header_from, MessageRecord.mail_from,
                       MessageRecord.recipients)
                .where(or_(MessageRecord.header_from == address,
                           MessageRecord.mail_from.in_(list(recipients)[:20])))
                .where(MessageRecord.received_at >= since)
                .where(MessageRecord.queue_id != task.envelope.queue_id)
                # Mail we rejected or quarantined made no contact.
                .where(MessageRecord.state.in_(["queued", "held", "done"]))
                .limit(_INDEX_ROWS))).all()
        for header_from, mail_from, rcpts in rows:
            to = {str(r).lower() for r in rcpts or []}
            if (header_from or "").lower() == address and to & recipients:
                return False
            if (mail_from or "").lower() in recipients and address in to:
                return False
        return True

    def request(self, message: Message) -> list[Finding]:
        """request - what the text asks for, with the phrases that said it.

        TODO: The request cues are phrase lists in seven languages, not a
        trained classifier; a request worded outside them (another language,
        a paraphrase) only scores through the identity signals, which leaves
        a spoof that asks in an unlisted way at the tag threshold.
        """
        text = f"{message.subject}\n{message.text[:self.max_text]}"
        findings = []
        for symbol, pattern in _CUE_PATTERNS.items():
            found = list(dict.fromkeys(m.group(0).lower() for m in pattern.finditer(text)))
            if found:
                findings.append(Finding(symbol, Category.IMPOSTOR,
                                        "phrases: " + ", ".join(repr(p) for p in found[:5]),
                                        data={"phrases": found[:10]}))
        return findings
