"""Distribution lists and aliases that mailward expands itself.

``[lists] members`` maps a list (or alias) address to its members; a member
may be a list in turn. A message to a list is judged once, with the list
address in its envelope, and delivered as one copy per member; each copy
records the list it came through (``copies.via``), so that a retro-scan, a
report or the console reaches every member's copy of it.

Expansion is bounded: lists nested deeper than ``lists.max_depth`` are not
followed, a list met again inside itself is skipped, and no message expands
to more than ``lists.max_members`` recipients. A recipient named directly
keeps its own copy with no list recorded, and no member gets two copies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger("mailward.lists")


@dataclass(frozen=True, slots=True)
class Expanded:
    """One recipient of a message after expansion, and the list it came through."""

    address: str
    via: str = ""


@dataclass(slots=True)
class Expansion:
    """The recipients of one message, and what expansion had to leave out."""

    recipients: list[Expanded]
    truncated: bool = False
    too_deep: list[str] | None = None


def expand(recipients: Iterable[str], lists: Mapping[str, Iterable[str]], *,
           max_depth: int = 5, max_members: int = 1000) -> Expansion:
    """expand - every envelope recipient, lists replaced by their members."""
    table = {key.lower(): list(value) for key, value in lists.items()}
    direct = list(recipients)
    seen: set[str] = {r.lower() for r in direct if r.lower() not in table}
    out = [Expanded(r) for r in direct if r.lower() not in table]
    result = Expansion(out)
    deep: list[str] = []
    for recipient in direct:
        top = recipient.lower()
        if top not in table:
            continue
        # Breadth first, so a member near the top is kept before a deep one.
        frontier = [(top, 1)]
        opened = {top}
        while frontier:
            name, depth = frontier.pop(0)
            for member in table[name]:
                key = member.lower()
                if key in table:
                    if key in opened:
                        continue  # a list inside itself
                    if depth >= max_depth:
                        deep.append(key)
                        continue
                    opened.add(key)
                    frontier.append((key, depth + 1))
                    continue
                if key in seen:
                    continue
                if len(out) >= max_members:
                    result.truncated = True
                    break
                seen.add(key)
                out.append(Expanded(member, recipient))
    if deep:
        result.too_deep = sorted(set(deep))
    return result


def expand_logged(recipients: Iterable[str], lists: Mapping[str, Iterable[str]],
                  max_depth: int, max_members: int, queue_id: str) -> list[Expanded]:
    """expand_logged - expand, and say in the log what a bound left out."""
    expansion = expand(recipients, lists, max_depth=max_depth, max_members=max_members)
    if expansion.truncated:
        log.error("%s: list expansion stopped at lists.max_members = %d recipients; "
                  "the other members get no copy", queue_id, max_members)
    if expansion.too_deep:
        log.error("%s: lists nested deeper than lists.max_depth = %d were not expanded: %s",
                  queue_id, max_depth, ", ".join(expansion.too_deep[:10]))
    return expansion.recipients
