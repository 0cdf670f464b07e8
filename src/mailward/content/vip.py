"""Protected people (VIPs): who impostors pretend to be, and how names match.

The directory lives in the database (``protected_people``), filled from a
CSV file by ``mailward vip import``. A person has a name, the addresses they
really write from, a role (CEO, CFO, Payroll) and optional aliases (another
spelling, a married name).

A display name matches a person when, after Unicode normalisation (NFKC,
case folding, accents and confusable letters folded to their Latin
skeleton), it names the same family name and the same given name, a
nickname of it or its initial, in either order ("Smith, John", "J. Smith",
"Johnny Smith"), or equals one of the person's aliases.

SECURITY: the CSV and every display name are untrusted text: fields are cut
to fixed lengths, rows are bounded, and matching is linear in the name.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import delete, select

from mailward.store import Store
from mailward.store.models import ProtectedPerson
from confusable_homoglyphs import confusables

MAX_ROWS = 100_000
MAX_NAME = 200
_ADDRESS = re.compile(r"[^@\s<>\"]{1,64}@[^@\s<>\"]{1,253}")
# Words around a name that say nothing about who it is.
_NOISE = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "jr", "sr", "ii", "iii", "via",
          "from", "the", "office", "of", "de", "van", "von", "der", "da", "di", "le", "la"}


class DirectoryError(ValueError):
    """A directory file that cannot be imported; the message says where."""


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    addresses: tuple[str, ...] = ()
    role: str = ""
    aliases: tuple[str, ...] = ()
    tokens: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def make(cls, name: str, addresses: list[str] | tuple[str, ...] = (), role: str = "",
             aliases: list[str] | tuple[str, ...] = ()) -> "Person":
        return cls(name.strip()[:MAX_NAME], tuple(a.strip().lower() for a in addresses
                                                   if a.strip()),
                   role.strip()[:MAX_NAME], tuple(a.strip()[:MAX_NAME] for a in aliases
                                                  if a.strip()),
                   tuple(name_tokens(name)))

    @property
    def given(self) -> str:
        return self.tokens[0] if self.tokens else ""

    @property
    def family(self) -> str:
        return self.tokens[-1] if len(self.tokens) > 1 else ""

    def describe(self) -> str:
        return f"{self.name} ({self.role})" if self.role else self.name


def fold(text: str) -> str:
    """fold - a name as comparable text: NFKC, no accents, Latin skeleton, lower case."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(ch))
    text = "".join(ch if ch.isascii() else _latin(ch) for ch in text)
    return text.casefold()


@lru_cache(maxsize=8192)
def _latin(ch: str) -> str:
    """_latin - the ASCII letter a character is confusable with (UTS #39), or itself."""
    for candidate in (ch, ch.upper()):
        found = confusables.is_confusable(candidate, preferred_aliases=["latin"])
        if found:
            for glyph in found[0]["homoglyphs"]:
                if glyph["c"].isascii() and glyph["c"].isalpha():
                    return glyph["c"].lower()
    return ch


def name_tokens(text: str) -> list[str]:
    """name_tokens - the words of a name, folded, "Last, First" put in order."""
    text = _ADDRESS.sub(" ", text[:MAX_NAME * 2])
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)  # "(CEO)", "[External]"
    if text.count(",") == 1:
        last, first = text.split(",")
        if last.strip() and first.strip() and len(first.split()) <= 3:
            text = f"{first} {last}"
    folded = fold(text)
    words = re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", folded)
    return [w for w in words if w not in _NOISE]


@lru_cache(maxsize=1)
def _nicknamer():
    from nicknames import NickNamer

    return NickNamer()


@lru_cache(maxsize=4096)
def given_name_forms(given: str) -> frozenset[str]:
    """given_name_forms - a given name, its nicknames and the names it shortens.

    TODO: The nickname table is English only; other languages' short forms
    (Hans for Johannes, Paco for Francisco) match only through aliases in
    the directory, so an impostor using one is missed unless it is listed.
    """
    namer = _nicknamer()
    forms = {given} | set(namer.nicknames_of(given)) | set(namer.canonicals_of(given))
    return frozenset(f.lower() for f in forms)


def matches(person: Person, display_name: str) -> str | None:
    """matches - how a display name names this person ("initial", ...), or None."""
    tokens = name_tokens(display_name)
    if not tokens:
        return None  # no name, or an address alone, names nobody
    for alias in person.aliases:
        if name_tokens(alias) == tokens:
            return "alias"
    if not person.family or len(person.family) < 2 or not tokens:
        return None
    if len(tokens) > len(person.tokens) + 2:
        return None  # a sentence that mentions the name is not the name
    family = person.family
    if family not in tokens and "-".join(person.tokens[1:]) not in tokens:
        return None
    others = [t for t in tokens if t != family]
    if person.given in others:
        return "full name"
    if any(t in given_name_forms(person.given) for t in others):
        return "nickname"
    if any(t == person.given[0] for t in others):
        return "initial"
    return None


def parse_csv(text: str) -> list[Person]:
    """parse_csv - people from CSV: name, email (several split by ; or |), role, aliases.

    The first row names the columns (name and email are required; address
    or addresses may stand for email). Blank lines and rows starting with #
    are skipped.
    """
    reader = csv.reader(io.StringIO(text))
    # Each row with the number of the line it ends on, for the errors below.
    numbered = [(reader.line_num, row) for row in reader]
    numbered = [(line, row) for line, row in numbered
                if row and any(c.strip() for c in row)
                and not row[0].lstrip().startswith("#")]
    rows = [row for _, row in numbered]
    if not rows:
        raise DirectoryError("the file is empty; expected a header row: name,email,role")
    header = [c.strip().lower() for c in rows[0]]
    aliases = {"address": "email", "addresses": "email", "emails": "email", "mail": "email",
               "title": "role", "alias": "aliases", "also_known_as": "aliases"}
    header = [aliases.get(c, c) for c in header]
    if "name" not in header or "email" not in header:
        raise DirectoryError(f"the header row {rows[0]!r} must name the columns name and "
                             "email (role and aliases are optional)")
    if len(rows) > MAX_ROWS + 1:
        raise DirectoryError(f"more than {MAX_ROWS} people")
    people = []
    for number, row in numbered[1:]:
        values = dict(zip(header, (c.strip() for c in row)))
        name = values.get("name", "")
        addresses = [a for a in re.split(r"[;|\s]+", values.get("email", "")) if a]
        bad = [a for a in addresses if not _ADDRESS.fullmatch(a)]
        # A person with no address would make all of their own mail look forged.
        problem = ("the name is empty" if not name else
                   f"{bad[0]!r} is not an email address" if bad else
                   f"{name!r} has no email address" if not addresses else "")
        if problem:
            raise DirectoryError(f"line {number}: {problem}")
        people.append(Person.make(name, addresses, values.get("role", ""),
                                  [a for a in re.split(r"[;|]", values.get("aliases", ""))]))
    return people


async def import_people(store: Store, people: list[Person], replace: bool) -> int:
    """import_people - store people; with replace, the directory becomes exactly them."""
    now = datetime.now(UTC)
    async with store.session() as session:
        if replace:
            await session.execute(delete(ProtectedPerson))
        else:
            names = {p.name.casefold() for p in people}
            existing = (await session.scalars(select(ProtectedPerson))).all()
            for row in existing:
                if row.name.casefold() in names:
                    await session.delete(row)
        for person in people:
            session.add(ProtectedPerson(name=person.name, addresses=list(person.addresses),
                                        role=person.role, aliases=list(person.aliases),
                                        added_at=now))
        await session.commit()
    return len(people)


async def load_people(store: Store) -> list[Person]:
    async with store.session() as session:
        rows = (await session.scalars(select(ProtectedPerson)
                                      .order_by(ProtectedPerson.name))).all()
    return [Person.make(r.name, r.addresses or [], r.role, r.aliases or []) for r in rows]


async def remove_person(store: Store, name: str) -> int:
    async with store.session() as session:
        result = await session.execute(delete(ProtectedPerson).where(
            ProtectedPerson.name == name))
        await session.commit()
    return result.rowcount or 0
