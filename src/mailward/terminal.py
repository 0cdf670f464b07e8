"""Text from mail made safe to print on a terminal, for the command line.

SECURITY: senders, subjects, file names and URLs come from hostile mail. A
bidirectional control (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) in a
subject reorders the rest of the terminal line, so a listing can show a
sender or a status that is not the one stored; an escape sequence (ESC, CSI)
can recolour, move the cursor or retitle the window; a line break or a tab
starts a forged row in output that scripts read. Every value the CLI prints
in a listing goes through ``cell``: whitespace runs become one space, and
every other control, format (bidi, zero-width), separator or surrogate
character is written as a visible ``\\uXXXX`` escape. Backslashes are left
as they are, so an escape in the output is not proof the original held a
control character.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from rich.markup import escape as escape_markup

# Unicode categories never printed raw: controls, format characters (the
# bidi controls, zero-width joiners and spaces, soft hyphen), line and
# paragraph separators, and lone surrogates from undecodable bytes.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_WHITESPACE = re.compile(r"[\t\n\v\f\r ]+")


def _visible(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def cell(value: Any, width: int | None = None) -> str:
    """cell - value as one line of printable text, cut to width characters first."""
    text = str(value if value is not None else "")
    if width is not None:
        text = text[:width]
    text = _WHITESPACE.sub(" ", text).strip(" ")
    if text.isprintable():
        return text
    return "".join(_visible(char) for char in text)


def markup_cell(value: Any, width: int | None = None) -> str:
    """markup_cell - cell for a rich Table: also its [markup] taken literally."""
    return escape_markup(cell(value, width))


def tsv_line(*values: Any) -> str:
    """tsv_line - one tab-separated line of cells, for scripts that read the output."""
    return "\t".join(cell(value) for value in values)
