"""Local IP reputation, learnt from the verdicts on each client IP's mail.

Every judged message counts as good (delivered) or bad (quarantined or
rejected as spam, phishing, malware or impostor) for the IP it came from.
Once an IP has sent enough mail, the share of bad mail decides: above the
configured ratio it is refused at connect (554 5.7.1); above half it adds
to the spam score. The counts live in the store, so every gateway node on
a shared database learns from all of them.

The counts age out: once no mail from an IP has been counted for the
configured window, its history is forgotten, so a refused IP (which adds no
mail while refused) gets a fresh start instead of a refusal for ever.
Trusted relays (``auth.trusted_networks``) carry everybody's mail, good and
bad alike; they are never scored or refused by reputation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from sqlalchemy import select, update

from mailward.auth import is_trusted_peer
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.store import Store
from mailward.store.models import IpReputation
from mailward.verdict import Action, Category, Finding, Verdict

_BAD_CATEGORIES = {Category.SPAM, Category.PHISH, Category.MALWARE, Category.IMPOSTOR}


class ReputationBook:
    """Reads and updates the good and bad counts of client IPs.

    Counts whose IP has had no mail counted within ``window`` seconds are
    stale: they read as none, and the next verdict starts them over.

    TODO: The window runs from an IP's last counted message, not from each
    message, so an IP that never pauses for a whole window keeps all its
    history; an old burst of bad mail then weighs on a host that has since
    been cleaned until its good mail outweighs it.
    """

    def __init__(self, store: Store, window: float) -> None:
        self.store = store
        self.window = timedelta(seconds=window)

    def _cutoff(self) -> datetime:
        return datetime.now(UTC) - self.window

    async def get(self, ip: str) -> tuple[int, int]:
        """get - the IP's good and bad counts within the window."""
        async with self.store.session() as session:
            row = await session.get(IpReputation, ip)
            if row is None or row.last_seen < self._cutoff():
                return (0, 0)
            return (row.good, row.bad)

    async def count(self, session, ip: str, verdict: Verdict) -> None:
        """count - add one verdict for the IP, inside the caller's transaction."""
        if not ip:
            return
        bad = verdict.action in (Action.QUARANTINE, Action.REJECT) and \
            verdict.category in _BAD_CATEGORIES
        good = verdict.action == Action.DELIVER
        if not (bad or good):
            return
        now = datetime.now(UTC)
        column = IpReputation.bad if bad else IpReputation.good
        result = await session.execute(
            update(IpReputation)
            .where(IpReputation.ip == ip, IpReputation.last_seen >= self._cutoff())
            .values({column: column + 1, "last_seen": now}))
        if result.rowcount:
            return
        # No recent history: a stale row starts over, a new IP gets a row.
        fresh = {"good": int(good), "bad": int(bad), "last_seen": now}
        result = await session.execute(update(IpReputation).where(IpReputation.ip == ip)
                                       .values(fresh))
        if not result.rowcount:
            session.add(IpReputation(ip=ip, **fresh))

    async def record(self, ip: str, verdict: Verdict) -> None:
        """record - count one verdict for the IP that sent the message."""
        async with self.store.session() as session:
            await self.count(session, ip, verdict)
            await session.commit()

    async def worst(self, limit: int = 20) -> list[IpReputation]:
        async with self.store.session() as session:
            query = select(IpReputation).order_by(IpReputation.bad.desc()).limit(limit)
            return list((await session.scalars(query)).all())


class IpReputationCheck:
    """Refuse or score a client by what its past mail was."""

    name: ClassVar[str] = "ip_reputation"
    stage: ClassVar[Stage] = Stage.CONNECT
    after: ClassVar[tuple[str, ...]] = ("connection_lists",)
    symbols: ClassVar[dict[str, str]] = {
        "IP_REPUTATION_BAD": "most mail from this client IP was bad; refused at connect",
        "IP_REPUTATION_POOR": "much of the mail from this client IP was bad",
        "IP_REPUTATION_GOOD": "mail from this client IP has been good",
    }

    def __init__(self, book: ReputationBook, min_messages: int, reject_ratio: float,
                 trusted: list[str]) -> None:
        self.book = book
        self.min_messages = min_messages
        self.reject_ratio = reject_ratio
        self.trusted = trusted

    @classmethod
    def from_services(cls, services: Services) -> "IpReputationCheck | None":
        settings = services.settings
        if not settings.connection.reputation:
            return None
        book = services.extras.setdefault(
            "reputation", ReputationBook(services.store, settings.connection.reputation_window))
        return cls(book, settings.connection.reputation_min_messages,
                   settings.connection.reputation_reject_ratio,
                   list(settings.auth.trusted_networks))

    async def check(self, task: Task) -> list[Finding]:
        ip = task.envelope.peer_ip
        if not ip or task.found("CONN_ALLOWLISTED") or is_trusted_peer(self.trusted, ip):
            return []
        good, bad = await self.book.get(ip)
        total = good + bad
        if total < self.min_messages:
            return []
        ratio = bad / total
        detail = f"{bad} of the last {total} messages from {ip} were bad ({ratio:.0%})"
        if ratio >= self.reject_ratio:
            return [Finding("IP_REPUTATION_BAD", Category.SPAM, detail)]
        if ratio >= 0.5:
            return [Finding("IP_REPUTATION_POOR", Category.SPAM, detail, weight=ratio)]
        if ratio <= 0.05:
            return [Finding("IP_REPUTATION_GOOD", Category.SPAM, detail)]
        return []
