"""Index look-ups: which delivered copies carry an indicator.

The message index (``copies``, ``message_urls``, ``message_files`` and the
envelope in ``messages``) is searched by its own indexes: a URL by its hash,
a file by its SHA-256, a sender by address. A domain also matches its
sub-domains; those are found once per scan among the distinct hosts of the
look-back window (there are far fewer hosts than rows), so no scan reads a
message again or walks every row per indicator.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from mailward.intel.store import url_hash
from mailward.store.models import Copy, MessageFile, MessageRecord, MessageUrl

CHUNK = 500


@dataclass(frozen=True, slots=True)
class Indicator:
    """An indicator as the retro-scan sees it."""

    type: str
    value: str
    category: str = "phish"
    source: str = "local"
    confidence: int = 100
    # When the store last added or refreshed it; None is "now" (a campaign rule).
    added_at: datetime | None = None

    @property
    def key(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True, slots=True)
class CopyHit:
    """One delivered copy an indicator matched, and on what."""

    copy_id: int
    queue_id: str
    recipient: str
    state: str
    matched_on: str


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


def _suffix_matches(hosts: Iterable[str], wanted: set[str]) -> dict[str, str]:
    """_suffix_matches - host -> the wanted domain it is, or is under."""
    found = {}
    for host in hosts:
        labels = (host or "").lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            candidate = ".".join(labels[start:])
            if candidate in wanted:
                found[host] = candidate
                break
    return found


class IndexLookup:
    """Finds, in one session, the copies delivered since a moment."""

    def __init__(self, session, since: datetime) -> None:
        self.session = session
        self.since = since

    @classmethod
    def window(cls, session, now: datetime, lookback: float) -> "IndexLookup":
        return cls(session, now - timedelta(seconds=lookback))

    async def total(self) -> int:
        return int(await self.session.scalar(
            select(func.count()).select_from(Copy).where(Copy.delivered_at >= self.since)) or 0)

    def _copy_columns(self):
        return (Copy.id, Copy.queue_id, Copy.recipient, Copy.state)

    async def _rows(self, query, label: str, key_of, out) -> None:
        for copy_id, queue_id, recipient, state, key in (await self.session.execute(query)).all():
            out[key_of(key)].append(CopyHit(copy_id, queue_id, recipient, state, label))

    async def find(self, indicators: Iterable[Indicator]) -> dict[Indicator, list[CopyHit]]:
        """find - every copy in the window each indicator matches (deduplicated)."""
        by_type: dict[str, dict[str, Indicator]] = defaultdict(dict)
        for indicator in indicators:
            by_type[indicator.type][indicator.value] = indicator
        raw: dict[tuple[str, str], list[CopyHit]] = defaultdict(list)
        if by_type.get("url"):
            await self._urls(by_type["url"], raw)
        if by_type.get("domain"):
            await self._url_domains(by_type["domain"], raw)
        if by_type.get("sha256"):
            await self._files(by_type["sha256"], raw)
        if by_type.get("sender"):
            await self._senders(by_type["sender"], raw)
        if by_type.get("sender_domain"):
            await self._sender_domains(by_type["sender_domain"], raw)
        if by_type.get("ip"):
            await self._ips(by_type["ip"], raw)
        result: dict[Indicator, list[CopyHit]] = {}
        for (kind, value), hits in raw.items():
            unique = {hit.copy_id: hit for hit in hits}
            result[by_type[kind][value]] = sorted(unique.values(), key=lambda h: h.copy_id)
        return result

    async def _urls(self, wanted: dict[str, Indicator], out) -> None:
        hashes = {url_hash(value): value for value in wanted}
        for chunk in _chunks(list(hashes)):
            query = (select(*self._copy_columns(), MessageUrl.url_hash)
                     .join(Copy, Copy.queue_id == MessageUrl.queue_id)
                     .where(MessageUrl.url_hash.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "url", lambda h: ("url", hashes[h]), out)

    async def _distinct(self, column) -> list[str]:
        """_distinct - every value of an indexed column: an index-only scan.

        The look-back is applied by the row query that follows; a host seen
        only before the window adds a value to its IN list and no row.
        """
        query = select(column).distinct()
        return [value for value in (await self.session.scalars(query)).all() if value]

    async def _url_domains(self, wanted: dict[str, Indicator], out) -> None:
        hosts = await self._distinct(MessageUrl.domain)
        matched = _suffix_matches(hosts, set(wanted))
        for chunk in _chunks(list(matched)):
            query = (select(*self._copy_columns(), MessageUrl.domain)
                     .join(Copy, Copy.queue_id == MessageUrl.queue_id)
                     .where(MessageUrl.domain.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "url domain", lambda h: ("domain", matched[h]), out)

    async def _files(self, wanted: dict[str, Indicator], out) -> None:
        for chunk in _chunks(list(wanted)):
            query = (select(*self._copy_columns(), MessageFile.sha256)
                     .join(Copy, Copy.queue_id == MessageFile.queue_id)
                     .where(MessageFile.sha256.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "attachment", lambda h: ("sha256", h), out)

    async def _senders(self, wanted: dict[str, Indicator], out) -> None:
        for chunk in _chunks(list(wanted)):
            query = (select(*self._copy_columns(), Copy.sender)
                     .where(Copy.sender.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "sender", lambda h: ("sender", h), out)
            query = (select(*self._copy_columns(), func.lower(MessageRecord.mail_from))
                     .join(MessageRecord, MessageRecord.queue_id == Copy.queue_id)
                     .where(MessageRecord.mail_from.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "envelope sender", lambda h: ("sender", h), out)

    async def _sender_domains(self, wanted: dict[str, Indicator], out) -> None:
        domains = await self._distinct(Copy.sender_domain)
        matched = _suffix_matches(domains, set(wanted))
        for chunk in _chunks(list(matched)):
            query = (select(*self._copy_columns(), Copy.sender_domain)
                     .where(Copy.sender_domain.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "sender domain",
                             lambda h: ("sender_domain", matched[h]), out)

    async def _ips(self, wanted: dict[str, Indicator], out) -> None:
        networks = [(ipaddress.ip_network(v), v) for v in wanted if "/" in v]
        exact = [v for v in wanted if "/" not in v]
        matched = {ip: ip for ip in exact}
        if networks:
            peers = await self._distinct(MessageRecord.peer_ip)
            for peer in peers:
                try:
                    address = ipaddress.ip_address(peer)
                except ValueError:
                    continue
                for network, value in networks:
                    if address.version == network.version and address in network:
                        matched[peer] = value
                        break
        for chunk in _chunks(list(matched)):
            query = (select(*self._copy_columns(), MessageRecord.peer_ip)
                     .join(MessageRecord, MessageRecord.queue_id == Copy.queue_id)
                     .where(MessageRecord.peer_ip.in_(chunk), Copy.delivered_at >= self.since))
            await self._rows(query, "sending IP", lambda h: ("ip", matched[h]), out)
