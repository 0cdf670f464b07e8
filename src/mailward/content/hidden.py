"""Hidden text: content a reader never sees, put there to fool classifiers.

Senders salt mail with text in zero-size fonts or hidden elements (a fake
"scanned and confirmed safe" banner, words of ham), and split telling words
with zero-width characters so that no filter sees "password". The
classifiers read only the rendered, normalised text; this check reports the
trick itself, since legitimate mail has little reason to use it. It also
records when a body was so long that the classifiers read only its prefix.

SECURITY: it reads views the message computed under their own bounds and
scans at most ``MAX_SCAN`` characters of each text part.
"""

from __future__ import annotations

import re
from typing import ClassVar

from mailward.content.features import MAX_TEXT, text_was_cut
from mailward.message import Message
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

MAX_SCAN = 200_000
MIN_HIDDEN_LETTERS = 10
MIN_ZERO_WIDTH = 3
SALTING_PIECES = 3
# Zero-width characters between two letters: a word split so filters miss it.
_ZERO_WIDTH_IN_WORD = re.compile(r"(?<=\w)[\u200b\u200c\u200d\u2060\ufeff\u180e]+(?=\w)")
# A text without any of these characters has no split word; re finds that
# fast, while the pattern above tries its look-behind at every position.
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u180e]")

SYMBOLS = {
    "CONTENT_HIDDEN_TEXT": "the HTML holds text a reader does not see (zero font size, hidden)",
    "CONTENT_HIDDEN_SALTING": "many pieces of hidden text, as used to salt or split words",
    "CONTENT_ZERO_WIDTH": "words split by zero-width characters",
    "CONTENT_PREFIX_ONLY": "the text is longer than the classifiers read; only a prefix was judged",
}


def _snippet(text: str, size: int = 120) -> str:
    return text if len(text) <= size else text[:size] + "..."


def hidden_findings(message: Message) -> list[Finding]:
    """hidden_findings - the hidden-text tricks of a message, as findings."""
    findings: list[Finding] = []
    hidden = message.hidden_text
    pieces = sum(r.hidden_pieces for r in message.rendered_html)
    if sum(c.isalpha() for c in hidden) >= MIN_HIDDEN_LETTERS or pieces >= SALTING_PIECES:
        findings.append(Finding("CONTENT_HIDDEN_TEXT", Category.SPAM,
                                f"{pieces} hidden piece(s): {_snippet(hidden)!r}",
                                data={"hidden": hidden[:500]}))
        if pieces >= SALTING_PIECES:
            findings.append(Finding("CONTENT_HIDDEN_SALTING", Category.SPAM,
                                    f"{pieces} pieces of hidden text"))
    splits = 0
    for part in (message.text_parts + message.html_parts)[:20]:
        text = part.text[:MAX_SCAN]
        if _ZERO_WIDTH.search(text):
            splits += len(_ZERO_WIDTH_IN_WORD.findall(text))
    if splits >= MIN_ZERO_WIDTH:
        findings.append(Finding("CONTENT_ZERO_WIDTH", Category.SPAM,
                                f"{splits} zero-width characters inside words"))
    if text_was_cut(message):
        findings.append(Finding("CONTENT_PREFIX_ONLY", Category.POLICY,
                                f"classified the first {MAX_TEXT} of "
                                f"{len(message.text)} characters of text"))
    return findings


class HiddenTextCheck:
    """Report text hidden from the reader, and bodies judged by a prefix."""

    name: ClassVar[str] = "hidden_text"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = SYMBOLS

    @classmethod
    def from_services(cls, services: Services) -> "HiddenTextCheck":
        return cls()

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        return hidden_findings(task.message)
