"""Passwords a message offers for its own encrypted attachments.

Malware is sent in encrypted archives so that filters cannot look inside,
with the password in the body ("the password is: 4471"). The words that
follow such a keyword (in several languages) in the subject, the readable
text and the file names are tried first, then a short list of passwords
common in such mail. The list is bounded: an attacker cannot make the
gateway try thousands of candidates.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailward.message import Message

# Words that introduce a password, as they appear in the languages of the
# mail this gateway sees most.
_KEYWORDS = (r"passwords?|passwd|passcode|pass|pwd|pw|p/w|code|pin|key|"
             r"kennwort|passwort|kennw|contrase(?:ñ|n)a|clave|mot\s+de\s+passe|mdp|"
             r"senha|parola(?:\s+d'ordine)?|wachtwoord|has(?:ł|l)o|heslo|jelsz(?:ó|o)|"
             r"lösenord|losenord|adgangskode|salasana|şifre|sifre|пароль|密码|密碼|パスワード")
_AFTER = re.compile(
    rf"(?i)(?<![\w])(?:{_KEYWORDS})(?![\w])\s*(?:is|ist|est|es|é|:|=|-|—|–|\(|\s)*"
    r"\s*[\"'“”‘’«»<\[]?([^\s\"'“”‘’«»<>\[\]]{1,64})")
_TRAILING = ".,;:!?)»”’\"'"
COMMON = ("infected", "password", "1234", "infected-test", "malware", "virus", "123",
          "12345", "123456", "1111", "0000", "2024", "2025", "2026", "abc123", "test",
          "secret", "invoice", "VelvetSweatshop")


def _from_text(text: str, limit: int) -> list[str]:
    found: list[str] = []
    for match in _AFTER.finditer(text):
        word = match.group(1).rstrip(_TRAILING)
        if word and word.lower() not in ("is", "ist", "est", "the", "below", "attached"):
            found.append(word)
        if len(found) >= limit:
            break
    return found


def candidate_passwords(message: "Message", limit: int = 20) -> list[str]:
    """candidate_passwords - passwords offered by the message, then common ones."""
    texts = [message.subject]
    try:
        texts.append(message.text[:200_000])
    except Exception:  # the text view is total, but a password hunt must never fail
        pass
    texts.extend(part.filename or "" for part in message.attachments)
    offered: list[str] = []
    for text in texts:
        offered.extend(_from_text(text, limit))
    # Also every short token that stands alone on a line: "Password:\n4471".
    for text in texts[1:2]:
        for match in re.finditer(r"(?im)(?:" + _KEYWORDS + r")\s*[:=]?\s*\n\s*(\S{1,64})\s*$",
                                 text):
            offered.append(match.group(1).rstrip(_TRAILING))
    unique = list(dict.fromkeys(p for p in offered if p))[:limit]
    return unique + [p for p in COMMON if p not in unique]
