"""A generated set of impostor (BEC) messages, and the directory they imitate.

Every message borrows an identity (a protected person's display name, a
lookalike of our or a partner's domain, a swapped Reply-To, an address in
the display name) and asks for something (a payment, gift cards, new bank
details, a quick task), in several languages, charsets and transfer
encodings, with RFC 2047 encoded words in names and subjects. Used by the
tests and by ``bench/impostor.py``.
"""

from __future__ import annotations

import base64
import itertools
import quopri
import random
from dataclasses import dataclass
from email.header import Header

OWN = "example.com"
PARTNER = "brightwater-supply.example"
RECIPIENTS = ["finance@example.com", "ap@example.com", "payroll@example.com"]

PEOPLE_CSV = """name,email,role,aliases
Helena Marchetti,helena.marchetti@example.com,Chief Executive Officer,
Tobias Lindqvist,tobias.lindqvist@example.com;tl@example.com,Chief Financial Officer,Toby Lindqvist
Priya Raghunathan,priya.raghunathan@example.com,Head of Payroll,
Chidi Okonkwo,chidi.okonkwo@example.com,Managing Director,
Élodie Delacroix-Baptiste,elodie.delacroix@example.com,Directrice financière,
"""

# (given, family) forms as impostors write them.
NAME_FORMS = [
    "Helena Marchetti", "Marchetti, Helena", "H. Marchetti", "HELENA MARCHETTI",
    "Helena Marchetti (CEO)", "Tobias Lindqvist", "Toby Lindqvist", "T. Lindqvist",
    "Lindqvist Tobias", "Priya Raghunathan", "Chidi Okonkwo", "Dr. Chidi Okonkwo",
    "Élodie Delacroix-Baptiste", "Elodie Delacroix-Baptiste", "Нelena Marchetti",
    "Tobias Lindqvist via Mobile",
]

FREEMAIL = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "hotmail.fr", "libero.it",
            "proton.me", "icloud.com"]
LOOKALIKE_OWN = ["examp1e.com", "exarnple.com", "example.co", "example-corp.com",
                 "examples.com", "exampie.com", "xn--exmple-cua.com",
                 "example.com.payments-secure.net", "exаmple.com"]
LOOKALIKE_PARTNER = ["brightwater-suppiy.example", "brightwater-supply.co",
                     "supply-brightwater.example", "brightwatersupply.com",
                     "brightvvater-supply.example"]

# The request, by language: (subject, body).
ASKS = {
    "en": [("Urgent wire transfer", "I need you to process a wire transfer of 48,750 EUR to a new "
            "supplier today. It is confidential, please keep this between us until the deal is "
            "announced. I am in a meeting and can't talk, reply by email."),
           ("Quick favour", "Are you at your desk? I need a quick favour. Please buy six Apple "
            "gift cards of 200 USD each for a client, scratch off the back and send me the codes. "
            "Keep it discreet."),
           ("Change of bank details", "Please note that our bank details have changed. Kindly "
            "update our account information before the next payment; the new account details "
            "are attached. Please pay the outstanding invoice to the new account."),
           ("Payroll update", "Hi, I changed banks. Can you update my direct deposit before "
            "this month's payroll? My new account number is below. Thanks."),
           ("Are you available?", "Are you available? I have an urgent task for you. Reply as "
            "soon as possible.")],
    "de": [("Dringende Überweisung", "Ich brauche heute noch eine Überweisung von 32.400 EUR an "
            "einen neuen Lieferanten. Bitte vertraulich behandeln, das bleibt unter uns. Ich bin "
            "in einer Besprechung."),
           ("Neue Bankverbindung", "Bitte beachten Sie unsere neue Bankverbindung. Bitte die "
            "offene Rechnung bezahlen und nur noch auf das neue Konto überweisen."),
           ("Kurze Frage", "Bist du im Büro? Ich brauche einen kleinen Gefallen: Bitte kaufe "
            "Geschenkkarten für Kunden, dringend.")],
    "fr": [("Virement urgent", "J'ai besoin que vous effectuiez un virement de 27 900 EUR "
            "aujourd'hui. C'est confidentiel, entre nous. Merci de faire au plus vite."),
           ("Nouvelles coordonnées bancaires", "Veuillez noter nos nouvelles coordonnées "
            "bancaires (nouveau RIB ci-joint) et régler la facture sur ce compte."),
           ("Petit service", "Êtes-vous disponible ? J'ai besoin d'un petit service : acheter "
            "des cartes cadeaux pour un client, immédiatement.")],
    "es": [("Transferencia urgente", "Necesito que realices una transferencia bancaria de "
            "19.500 EUR hoy mismo. Es confidencial. Hazlo lo antes posible."),
           ("Cambio de datos bancarios", "Le informamos de nuestros nuevos datos bancarios. "
            "Por favor, pagar la factura pendiente en la nueva cuenta bancaria.")],
    "it": [("Bonifico urgente", "Ho bisogno che tu faccia un bonifico di 22.000 EUR subito. "
            "È riservato, tra di noi."),
           ("Nuove coordinate bancarie", "Vi comunichiamo le nostre nuove coordinate bancarie; "
            "nuovo IBAN in allegato. Effettuare il pagamento su questo conto.")],
    "nl": [("Spoedbetaling", "Kun je vandaag met spoed een overboeking van 15.000 EUR doen? "
            "Dit is vertrouwelijk, tussen ons."),
           ("Nieuwe bankgegevens", "Onze nieuwe bankgegevens staan hieronder. Graag de "
            "betaling uitvoeren naar het nieuwe rekeningnummer.")],
    "pt": [("Transferência urgente", "Preciso que faça uma transferência bancária de 12.000 "
            "EUR o mais rápido possível. É sigiloso."),
           ("Novos dados bancários", "Informamos os nossos novos dados bancários. Por favor, "
            "efetuar o pagamento na nova conta bancária.")],
}


@dataclass(frozen=True)
class Sample:
    kind: str
    raw: bytes
    mail_from: str
    recipient: str


def _word(text: str, rng: random.Random) -> str:
    """_word - a display name or subject as an RFC 2047 encoded word, or plain when ASCII."""
    if text.isascii() and rng.random() < 0.5:
        return text
    charset = "utf-8" if not text.isascii() or rng.random() < 0.7 else "iso-8859-1"
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    encoded = Header(text, charset).encode()
    if rng.random() < 0.5:  # Q rather than B encoding
        raw = text.encode(charset)
        encoded = "=?" + charset + "?Q?" + quopri.encodestring(raw, header=True).decode() + "?="
    return encoded


def _mailbox(name: str, address: str, rng: random.Random) -> str:
    shown = _word(name, rng)
    if shown == name and any(c in name for c in ",.()"):
        shown = '"' + name + '"'
    return f"{shown} <{address}>"


def _body(text: str, rng: random.Random) -> tuple[str, bytes]:
    """_body - (headers, bytes) in one of several charsets and encodings, maybe HTML."""
    html = rng.random() < 0.3
    content = (f"<html><body><p>{text}</p><p>Sent from my phone</p></body></html>" if html
               else f"{text}\r\n\r\nSent from my phone\r\n")
    kind = "text/html" if html else "text/plain"
    choice = rng.choice(["8bit", "qp", "base64", "latin1"])
    if choice == "latin1":
        try:
            data = content.encode("iso-8859-1")
            return (f"Content-Type: {kind}; charset=iso-8859-1\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n",
                    quopri.encodestring(data).replace(b"\n", b"\r\n"))
        except UnicodeEncodeError:
            choice = "qp"
    data = content.encode("utf-8")
    if choice == "qp":
        return (f"Content-Type: {kind}; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n",
                quopri.encodestring(data).replace(b"\r\r\n", b"\r\n").replace(b"\n", b"\r\n")
                .replace(b"\r\r\n", b"\r\n"))
    if choice == "base64":
        return (f"Content-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
                base64.encodebytes(data).replace(b"\n", b"\r\n"))
    return f"Content-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n", data


def _message(number: int, from_: str, to: str, subject: str, text: str, rng: random.Random,
             reply_to: str = "") -> bytes:
    headers, body = _body(text, rng)
    lines = [f"From: {from_}", f"To: {to}", f"Subject: {_word(subject, rng)}",
             f"Message-ID: <bec.{number}.{rng.randrange(10**9)}@mail.invalid>",
             "Date: Thu, 03 Dec 2026 09:14:00 +0000", "MIME-Version: 1.0"]
    if reply_to:
        lines.append(f"Reply-To: {reply_to}")
    head = "\r\n".join(lines) + "\r\n" + headers + "\r\n"
    return head.encode("utf-8") + body + (b"" if body.endswith(b"\r\n") else b"\r\n")


PLAIN_TEXTS = [("Hello", "Please call me when you have a moment."),
               ("Notes", "Thanks for the notes from yesterday, see you on Monday."),
               ("Re: agenda", "Looks good to me.")]


def plain_spoofs(count: int, seed: int = 7) -> list[Sample]:
    """plain_spoofs - protected names and lookalikes that ask for nothing (yet).

    Beyond the goal set: the opening message of a longer con carries no
    request, so only the identity signals can speak for it.
    """
    rng = random.Random(seed)
    out = []
    for number in range(count):
        name = rng.choice(NAME_FORMS)
        domain = rng.choice(FREEMAIL + LOOKALIKE_OWN)
        sender = f"office{rng.randrange(100, 999)}@{domain}"
        subject, text = rng.choice(PLAIN_TEXTS)
        to = rng.choice(RECIPIENTS)
        out.append(Sample("no-request", _message(10**6 + number, _mailbox(name, sender, rng),
                                                  to, subject, text, rng), sender, to))
    return out


def _asks(rng: random.Random):
    flat = [(lang, s, b) for lang, items in ASKS.items() for s, b in items]
    rng.shuffle(flat)
    return itertools.cycle(flat)


def impostor_set(count_per_kind: int = 30, seed: int = 20261203) -> list[Sample]:
    """impostor_set - display-name spoofs, lookalikes, reply-to swaps, address-in-name."""
    rng = random.Random(seed)
    asks = _asks(rng)
    samples: list[Sample] = []
    number = itertools.count()

    def local(name: str) -> str:
        base = "".join(c for c in name.lower() if c.isascii() and c.isalpha())[:10] or "office"
        return f"{base}{rng.randrange(10, 999)}"

    for _ in range(count_per_kind):
        # Display-name spoofing of a protected person from a free-mail address.
        name = rng.choice(NAME_FORMS)
        lang, subject, text = next(asks)
        sender = f"{local(name)}@{rng.choice(FREEMAIL)}"
        to = rng.choice(RECIPIENTS)
        samples.append(Sample("display-name", _message(next(number), _mailbox(name, sender, rng),
                                                        to, subject, text, rng), sender, to))
    for _ in range(count_per_kind):
        # A protected person's name on some other company's (perhaps hijacked) domain.
        name = rng.choice(NAME_FORMS)
        lang, subject, text = next(asks)
        sender = (f"{local(name)}@"
                  f"{rng.choice(['northpeak-consulting.net', 'mail.orbis-trade.org', 'vanta-ltd.co.uk', 'kalmar-eng.de'])}")
        to = rng.choice(RECIPIENTS)
        samples.append(Sample("display-name-other", _message(
            next(number), _mailbox(name, sender, rng), to, subject, text, rng), sender, to))
    for _ in range(count_per_kind):
        # A lookalike of our own domain, under a protected name or a role.
        domain = rng.choice(LOOKALIKE_OWN)
        name = rng.choice(NAME_FORMS + ["Accounts Payable", "Finance Department"])
        lang, subject, text = next(asks)
        sender = f"{rng.choice(['ceo', 'finance', 'h.marchetti', 'office'])}@{domain}"
        to = rng.choice(RECIPIENTS)
        samples.append(Sample("lookalike-own", _message(next(number),
                                                         _mailbox(name, sender, rng), to,
                                                         subject, text, rng), sender, to))
    for _ in range(count_per_kind):
        # A partner's lookalike asking to pay to new bank details.
        domain = rng.choice(LOOKALIKE_PARTNER)
        lang, subject, text = next(asks)
        sender = f"{rng.choice(['billing', 'accounts', 'invoices', 'j.fernandes'])}@{domain}"
        to = rng.choice(RECIPIENTS)
        name = rng.choice(["Brightwater Supply Accounts", "Joana Fernandes", "Billing"])
        samples.append(Sample("lookalike-partner", _message(next(number),
                                                             _mailbox(name, sender, rng), to,
                                                             subject, text, rng), sender, to))
    for _ in range(count_per_kind):
        # Reply-To swap: From shows a protected domain, replies go elsewhere.
        lang, subject, text = next(asks)
        own = rng.random() < 0.5
        shown_name = rng.choice(NAME_FORMS) if own else "Brightwater Supply Accounts"
        sender = (rng.choice(["helena.marchetti", "tobias.lindqvist", "ceo"]) + "@" + OWN if own
                  else f"billing@{PARTNER}")
        reply = (f"{local(shown_name)}@{rng.choice(FREEMAIL)}" if rng.random() < 0.6
                 else f"billing@{rng.choice(LOOKALIKE_PARTNER + LOOKALIKE_OWN)}")
        envelope = f"bounce{rng.randrange(1000)}@{rng.choice(['mailer.invalid', 'bulk.invalid'])}"
        to = rng.choice(RECIPIENTS)
        samples.append(Sample("reply-to-swap", _message(
            next(number), _mailbox(shown_name, sender, rng), to, subject, text, rng,
            reply_to=_mailbox(shown_name, reply, rng)), envelope, to))
    for _ in range(count_per_kind):
        # The real address written into the display name of another address.
        lang, subject, text = next(asks)
        shown = rng.choice(["helena.marchetti@example.com", "tobias.lindqvist@example.com",
                            f"billing@{PARTNER}"])
        sender = f"{local(shown)}@{rng.choice(FREEMAIL + ['mail-relay.invalid'])}"
        to = rng.choice(RECIPIENTS)
        samples.append(Sample("address-in-name", _message(
            next(number), f'"{shown}" <{sender}>', to, subject, text, rng), sender, to))
    return samples


# Judging: a real gateway in this process (no listeners), its DNS from an empty zone.


def settings_for(directory, **overrides):
    from mailward.config import load_settings

    directory.mkdir(parents=True, exist_ok=True)
    zone = directory / "empty.zone"
    zone.write_text("$ORIGIN invalid.\n")
    values = {"storage.data_dir": str(directory / "data"),
              "smtp.accepted_domains": [OWN], "impostor.partner_domains": [PARTNER],
              "dns.zone_file": str(zone), "dns.timeout": "1s"}
    values.update(overrides)
    return load_settings(overrides=values)


def envelope_for(number: int, mail_from: str, recipient: str):
    from mailward.envelope import Envelope

    return Envelope(queue_id=f"bench{number:08d}", mail_from=mail_from,
                    rcpt_to=[recipient], peer_ip="198.51.100.7", helo="mail.invalid")


async def judge_all(directory, messages, people_csv: str = PEOPLE_CSV):
    """judge_all - (impostor score, verdict) of each (raw, mail_from, recipient)."""
    from mailward.content.vip import import_people, parse_csv
    from mailward.gateway import Gateway

    gateway = Gateway(settings_for(directory))
    await gateway.start()
    try:
        await import_people(gateway.services.store, parse_csv(people_csv), replace=True)
        results = []
        for number, (raw, mail_from, recipient) in enumerate(messages):
            _, verdict, _ = await gateway.judge(envelope_for(number, mail_from, recipient), raw)
            results.append((verdict.categories.get("impostor", 0.0), verdict))
        return results
    finally:
        await gateway.close()


def ham_messages(paths):
    """ham_messages - (raw, envelope sender, recipient) of corpus files, CRLF."""
    import re

    out = []
    for path in paths:
        data = path.read_bytes()
        if data.startswith(b"From ") and b"\n" in data:
            data = data.split(b"\n", 1)[1]
        raw = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        head = raw.split(b"\r\n\r\n", 1)[0]
        found = re.search(rb"(?im)^Return-Path:\s*<?([^>\s]*)>?", head)
        out.append((raw, found.group(1).decode("ascii", "replace") if found else "",
                    "user@example.com"))
    return out
