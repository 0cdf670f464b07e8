"""The threat-intelligence store: indicators in the database, a cache in memory.

Indicators are URLs, domains, IPs and networks, SHA-256 file hashes and
sender addresses or domains, each with a source, a category, a confidence and
an optional expiry. Every change bumps a generation counter in the store;
each gateway process keeps the unexpired indicators in memory and reloads
them when the generation moves, so ``mailward intel add`` is seen by a
running server within a second, without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Iterable

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mailward.store import Store
from mailward.store.models import Indicator, Meta

log = logging.getLogger("mailward.intel")

TYPES = ("url", "domain", "ip", "sha256", "sender", "sender_domain")
CATEGORIES = ("phish", "malware", "spam", "impostor")
GENERATION_KEY = "intel_generation"


class IndicatorError(ValueError):
    """An indicator value that is not of its type."""


def normalize_domain(value: str) -> str:
    text = value.strip().lower().rstrip(".")
    if text.startswith("*."):
        text = text[2:]
    try:
        text = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError:
        raise IndicatorError(f"{value!r} is not a valid domain name") from None
    if not re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*",
                        text) or len(text) > 253:
        raise IndicatorError(f"{value!r} is not a valid domain name")
    return text


def normalize(kind: str, value: str) -> str:
    """normalize - the canonical form of an indicator, or IndicatorError."""
    value = value.strip()
    if kind not in TYPES:
        raise IndicatorError(f"unknown indicator type {kind!r} (one of {', '.join(TYPES)})")
    if not value:
        raise IndicatorError("empty indicator value")
    if kind == "url":
        from mailward.urls.normalize import normalize_url

        url = normalize_url(value)
        if url is None:
            raise IndicatorError(f"{value!r} is not an http(s) URL")
        return url
    if kind in ("domain", "sender_domain"):
        return normalize_domain(value.lstrip("@"))
    if kind == "ip":
        try:
            return str(ipaddress.ip_network(value, strict=False)).removesuffix("/32").removesuffix("/128")
        except ValueError:
            raise IndicatorError(f"{value!r} is not an IP address or network") from None
    if kind == "sha256":
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise IndicatorError(f"{value!r} is not a SHA-256 (64 hex digits)")
        return value.lower()
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise IndicatorError(f"{value!r} is not an email address")
    return f"{local}@{normalize_domain(domain)}".lower()


@dataclass(frozen=True, slots=True)
class Hit:
    """A match of a value against the intelligence."""

    kind: str
    value: str
    category: str
    source: str
    confidence: int


@dataclass(slots=True)
class NewIndicator:
    kind: str
    value: str
    source: str = "local"
    category: str = "phish"
    confidence: int = 100
    expires_at: datetime | None = None
    comment: str = ""


class IntelStore:
    """Reads and writes indicators."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add_many(self, items: Iterable[NewIndicator]) -> tuple[int, int]:
        """add_many - insert or refresh indicators; (added, updated) counts."""
        now = datetime.now(UTC)
        rows = []
        for item in items:
            if item.category not in CATEGORIES:
                raise IndicatorError(f"unknown category {item.category!r} "
                                     f"(one of {', '.join(CATEGORIES)})")
            rows.append({"type": item.kind, "value": normalize(item.kind, item.value),
                         "source": item.source, "category": item.category,
                         "confidence": item.confidence, "expires_at": item.expires_at,
                         "comment": item.comment, "first_seen": now, "added_at": now})
        if not rows:
            return 0, 0
        given = len(rows)
        # One statement may not touch a row twice (PostgreSQL): the last one wins.
        rows = list({(r["type"], r["value"], r["source"]): r for r in rows}.values())
        added = 0
        async with self.store.session() as session:
            for start in range(0, len(rows), 500):
                chunk = rows[start:start + 500]
                before = await session.scalar(select(func.count()).select_from(Indicator))
                insert = pg_insert if not self.store.is_sqlite else sqlite_insert
                statement = insert(Indicator).values(chunk)
                statement = statement.on_conflict_do_update(
                    index_elements=["type", "value", "source"],
                    set_={"category": statement.excluded.category,
                          "confidence": statement.excluded.confidence,
                          "expires_at": statement.excluded.expires_at,
                          "added_at": statement.excluded.added_at})
                await session.execute(statement)
                after = await session.scalar(select(func.count()).select_from(Indicator))
                added += (after or 0) - (before or 0)
            await _bump(session, self.store)
            await session.commit()
        return added, given - added

    async def add(self, kind: str, value: str, **fields: object) -> bool:
        added, _ = await self.add_many([NewIndicator(kind, value, **fields)])  # type: ignore[arg-type]
        return added == 1

    async def remove(self, kind: str, value: str, source: str | None = None) -> int:
        value = normalize(kind, value)
        async with self.store.session() as session:
            statement = delete(Indicator).where(Indicator.type == kind, Indicator.value == value)
            if source is not None:
                statement = statement.where(Indicator.source == source)
            result = await session.execute(statement)
            await _bump(session, self.store)
            await session.commit()
            return result.rowcount or 0

    async def expire(self, now: datetime | None = None) -> int:
        """expire - delete indicators whose expiry has passed."""
        now = now or datetime.now(UTC)
        async with self.store.session() as session:
            result = await session.execute(delete(Indicator).where(
                Indicator.expires_at.is_not(None), Indicator.expires_at <= now))
            if result.rowcount:
                await _bump(session, self.store)
            await session.commit()
            return result.rowcount or 0

    async def list(self, kind: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[Indicator]:
        async with self.store.session() as session:
            query = select(Indicator).order_by(Indicator.id.desc()).limit(limit).offset(offset)
            if kind:
                query = query.where(Indicator.type == kind)
            return list((await session.scalars(query)).all())

    async def generation(self) -> int:
        async with self.store.reading() as session:
            value = await session.scalar(select(Meta.value).where(Meta.key == GENERATION_KEY))
            return int(value or 0)

    async def active(self, now: datetime | None = None) -> list[Indicator]:
        now = now or datetime.now(UTC)
        async with self.store.reading() as session:
            query = select(Indicator).where(or_(Indicator.expires_at.is_(None),
                                                Indicator.expires_at > now))
            return list((await session.scalars(query)).all())


async def _bump(session, store: Store) -> None:
    """_bump - advance the generation so that every cache reloads."""
    result = await session.execute(update(Meta).where(Meta.key == GENERATION_KEY)
                                   .values(value=Meta.value + 1))
    if not result.rowcount:
        session.add(Meta(key=GENERATION_KEY, value=1))


class IntelCache:
    """The unexpired indicators in memory, reloaded when the store changes."""

    def __init__(self, intel: IntelStore, refresh_interval: float = 1.0) -> None:
        self.intel = intel
        self.refresh_interval = refresh_interval
        self.generation = -1
        self._checked = 0.0
        self._lock = asyncio.Lock()
        self._exact: dict[tuple[str, str], Hit] = {}
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Hit]] = []
        self._expiries: list[float] = []

    async def refresh(self, force: bool = False) -> None:
        """refresh - reload if the generation moved or an indicator expired."""
        now = time.monotonic()
        if not force and now - self._checked < self.refresh_interval:
            return
        async with self._lock:
            if not force and now - self._checked < self.refresh_interval:
                return
            self._checked = now
            generation = await self.intel.generation()
            soonest = min(self._expiries, default=float("inf"))
            if generation == self.generation and time.time() < soonest and not force:
                return
            await self._load(generation)

    async def _load(self, generation: int) -> None:
        exact: dict[tuple[str, str], Hit] = {}
        networks = []
        expiries = []
        for row in await self.intel.active():
            hit = Hit(row.type, row.value, row.category, row.source, row.confidence)
            if row.expires_at is not None:
                expiries.append(row.expires_at.timestamp())
            if row.type == "ip" and "/" in row.value:
                networks.append((ipaddress.ip_network(row.value), hit))
                continue
            previous = exact.get((row.type, row.value))
            if previous is None or previous.confidence < hit.confidence:
                exact[(row.type, row.value)] = hit
        self._exact, self._networks, self._expiries = exact, networks, expiries
        self.generation = generation
        log.info("intelligence loaded: %d indicators (generation %d)",
                 len(exact) + len(networks), generation)

    async def watch(self) -> None:
        """watch - reload in the background as soon as the store changes."""
        while True:
            try:
                await self.refresh()
            except Exception as error:  # the store may be briefly unreachable
                log.warning("intelligence refresh failed: %s", error)
            await asyncio.sleep(self.refresh_interval)

    def __len__(self) -> int:
        return len(self._exact) + len(self._networks)

    def url(self, url: str) -> Hit | None:
        return self._exact.get(("url", url))

    def domain(self, host: str, kind: str = "domain") -> Hit | None:
        """domain - a hit for the host or any parent domain of it."""
        labels = host.lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            hit = self._exact.get((kind, ".".join(labels[start:])))
            if hit:
                return hit
        return None

    def sha256(self, digest: str) -> Hit | None:
        return self._exact.get(("sha256", digest.lower()))

    def sender(self, address: str) -> Hit | None:
        address = address.lower()
        return (self._exact.get(("sender", address))
                or self.domain(address.rpartition("@")[2], "sender_domain"))

    def ip(self, value: str) -> Hit | None:
        hit = self._exact.get(("ip", value))
        if hit or not self._networks:
            return hit
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return None
        for network, candidate in self._networks:
            if address.version == network.version and address in network:
                return candidate
        return None


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
