"""Sender rules kept in the store: allow or block a sender, for all or for one.

The console's "release and allow sender" and "block sender" actions, and the
digest's one-click links, add rules here; the ``sender_rules`` check turns
them into findings the policy acts on: SENDER_RULE_ALLOW forces delivery
(the policy's allow list: malware is still stopped), SENDER_RULE_BLOCK
forces a reject. A rule names an address or ``@domain``, and either every
recipient or one recipient address. A verdict is per message, so a
recipient's own rule decides only when every recipient of the message has
one (or a rule for everyone matches).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import delete, select

from mailward.pipeline import Stage, Task
from mailward.store import Store
from mailward.store.models import SenderRule
from mailward.verdict import Category, Finding

if TYPE_CHECKING:
    from mailward.services import Services

log = logging.getLogger("mailward.web")
KINDS = ("allow", "block")
_ENTRY = re.compile(r"[^@\s\"<>(),;:\\\[\]]{0,64}@[a-z0-9.-]{1,255}")
_CACHE_SECONDS = 2.0
_MAX_RULES = 200_000


class SenderRuleError(ValueError):
    """A sender rule that cannot be stored; the text says why."""


def normalise_entry(sender: str) -> str:
    """normalise_entry - a lower-case address or @domain, or SenderRuleError."""
    entry = sender.strip().lower()
    if not _ENTRY.fullmatch(entry) or entry.endswith("@"):
        raise SenderRuleError(f"{sender!r} is not an address or @domain")
    return entry


def matches(entry: str, address: str) -> bool:
    address = address.lower()
    return entry == address or (entry.startswith("@") and address.endswith(entry))


class SenderRules:
    """The rules in the store, with a short-lived cache for the check."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cached: list[SenderRule] = []
        self._loaded = float("-inf")

    async def add(self, kind: str, sender: str, recipient: str, by: str) -> SenderRule:
        """add - a rule (kept once); returns it."""
        if kind not in KINDS:
            raise SenderRuleError(f"kind {kind!r} is not allow or block")
        entry = normalise_entry(sender)
        recipient = recipient.strip().lower()
        async with self.store.session() as session:
            found = await session.scalar(select(SenderRule).where(
                SenderRule.kind == kind, SenderRule.sender == entry,
                SenderRule.recipient == recipient))
            if found is not None:
                return found
            # The opposite rule for the same pair would contradict this one.
            await session.execute(delete(SenderRule).where(
                SenderRule.kind != kind, SenderRule.sender == entry,
                SenderRule.recipient == recipient))
            rule = SenderRule(kind=kind, sender=entry, recipient=recipient,
                              created_at=datetime.now(UTC), created_by=by[:200])
            session.add(rule)
            await session.commit()
        self._loaded = float("-inf")
        return rule

    async def remove(self, rule_id: int) -> SenderRule | None:
        async with self.store.session() as session:
            rule = await session.get(SenderRule, rule_id)
            if rule is not None:
                await session.delete(rule)
                await session.commit()
        self._loaded = float("-inf")
        return rule

    async def list(self, recipients: frozenset[str] | None = None, limit: int = 200,
                   offset: int = 0) -> list[SenderRule]:
        query = select(SenderRule).order_by(SenderRule.id.desc())
        if recipients is not None:
            query = query.where(SenderRule.recipient.in_(sorted(recipients)))
        async with self.store.session() as session:
            return list((await session.scalars(query.limit(limit).offset(offset))).all())

    async def rules(self) -> list[SenderRule]:
        """rules - every rule, cached for a moment."""
        if time.monotonic() - self._loaded > _CACHE_SECONDS:
            async with self.store.session() as session:
                self._cached = list((await session.scalars(
                    select(SenderRule).limit(_MAX_RULES))).all())
            self._loaded = time.monotonic()
        return self._cached

    async def decide(self, sender: str, recipients: list[str]) -> tuple[str, str] | None:
        """decide - ("block"|"allow", evidence) for a sender and recipients, or None."""
        if not sender:
            return None
        rules = [r for r in await self.rules() if matches(r.sender, sender)]
        for kind in ("block", "allow"):
            global_rule = next((r for r in rules if r.kind == kind and not r.recipient), None)
            if global_rule is not None:
                return kind, f"{sender} matches {kind} rule {global_rule.sender} (everyone)"
            own = {r.recipient for r in rules if r.kind == kind and r.recipient}
            wanted = {r.lower() for r in recipients}
            if wanted and wanted <= own:
                return kind, f"{sender} matches {kind} rules of {', '.join(sorted(wanted))}"
        return None


def rules_of(services: "Services") -> SenderRules:
    """rules_of - the one SenderRules of this process."""
    rules = services.extras.get("sender_rules")
    if rules is None:
        rules = services.extras["sender_rules"] = SenderRules(services.store)
    return rules


class SenderRuleCheck:
    """Allow or block senders by the rules people added in the console."""

    name: ClassVar[str] = "sender_rules"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "SENDER_RULE_ALLOW": "the sender is allowed by a rule added in the console",
        "SENDER_RULE_BLOCK": "the sender is blocked by a rule added in the console",
    }

    def __init__(self, rules: SenderRules) -> None:
        self.rules = rules

    @classmethod
    def from_services(cls, services: "Services") -> "SenderRuleCheck":
        return cls(rules_of(services))

    async def check(self, task: Task) -> list[Finding]:
        message = task.message
        sender = (message.from_addresses[0].address if message and message.from_addresses
                  else task.envelope.mail_from)
        decided = await self.rules.decide(sender, list(task.envelope.rcpt_to))
        if decided is None:
            return []
        kind, evidence = decided
        symbol = "SENDER_RULE_BLOCK" if kind == "block" else "SENDER_RULE_ALLOW"
        return [Finding(symbol, Category.POLICY, evidence)]
