"""Intelligence intake: every way in passes the too-common check, then the store.

``mailward intel add|import``, the REST API, feed polls (files, TAXII 2.1,
MISP) all add through ``add_checked``: the indicators that would match more
than ``trap.max_share`` of the delivered copies in the look-back are
refused (not stored) unless forced, and a forced one is remembered so the
retro-scan does not refuse it either. A domain that is one of ours (or a
parent of one) is refused unless forced, since it would block our own mail;
a public suffix (com, co.uk, github.io) is always refused. What is stored
moves the store's generation, which is what starts the retro-scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from mailward.intel.feeds import FeedResult
from mailward.intel.store import IndicatorError, IntelStore, NewIndicator, normalize
from mailward.store.models import FeedState, ForcedIndicator
from mailward.trap.lookup import IndexLookup, Indicator
from mailward.trap.retroscan import too_common

if TYPE_CHECKING:
    from mailward.config import Settings
    from mailward.store import Store

log = logging.getLogger("mailward.intel")


@dataclass
class IntakeReport:
    added: int = 0
    updated: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated,
                "refused": [{"indicator": k, "reason": r} for k, r in self.refused],
                "errors": self.errors, "skipped": self.skipped, "expired": self.expired,
                "duplicates": self.duplicates}


_PUBLIC_SUFFIXES: dict[str, Any] = {}


def _is_public_suffix(settings: "Settings", domain: str) -> bool:
    """_is_public_suffix - is domain on the public suffix list (one label always is)."""
    path = settings.dmarc.psl_file
    if path not in _PUBLIC_SUFFIXES:
        from publicsuffixlist import PublicSuffixList

        if path:
            with open(path, encoding="utf-8") as handle:
                _PUBLIC_SUFFIXES[path] = PublicSuffixList(handle)
        else:
            _PUBLIC_SUFFIXES[path] = PublicSuffixList()
    return bool(_PUBLIC_SUFFIXES[path].is_public(domain))


def domain_refusal(settings: "Settings", item: NewIndicator) -> tuple[str, bool]:
    """domain_refusal - why a domain indicator is refused ("" if not), and if force may."""
    if item.kind not in ("domain", "sender_domain"):
        return "", True
    try:
        domain = normalize(item.kind, item.value)
    except IndicatorError:
        return "", True  # the store names what is wrong with it
    if _is_public_suffix(settings, domain):
        reach = ("so it never matches" if "." not in domain else
                 "so it would match every domain registered under it")
        return (f"{domain} is a public suffix, not a registered domain, {reach}; "
                f"name the registered domain (such as evil.{domain})"), False
    ours = [own for own in settings.smtp.accepted_domains
            if own.lower() == domain or own.lower().endswith("." + domain)]
    if ours:
        return (f"{ours[0]} is one of smtp.accepted_domains, so this would block "
                f"our own mail; add it with --force if meant"), True
    return "", True


async def add_checked(settings: "Settings", store: "Store", items: list[NewIndicator],
                      force: bool = False, actor: str = "") -> IntakeReport:
    """add_checked - store the indicators that are not too common (or all, forced)."""
    report = IntakeReport()
    if not items:
        return report
    keyed = {f"{i.kind}:{i.value}": i for i in items}
    refused, never = {}, {}
    for key, item in keyed.items():
        reason, forcible = domain_refusal(settings, item)
        if reason:
            (refused if forcible else never)[key] = reason
    async with store.session() as session:
        lookup = IndexLookup.window(session, datetime.now(UTC), settings.trap.lookback)
        found = await lookup.find(Indicator(i.kind, i.value, i.category) for i in items
                                  if f"{i.kind}:{i.value}" not in never)
        total = await lookup.total() if found else 0
        for indicator, hits in found.items():
            reason = too_common(len(hits), total, settings)
            if reason:
                refused[indicator.key] = reason
        if force and refused:
            now = datetime.now(UTC)
            known = set((await session.scalars(select(ForcedIndicator.key).where(
                ForcedIndicator.key.in_(list(refused))))).all())
            for key in refused.keys() - known:
                session.add(ForcedIndicator(key=key[:2100], forced_at=now,
                                            forced_by=actor[:200]))
            await session.commit()
            log.warning("forced past the too-common check by %s: %s", actor or "?",
                        ", ".join(sorted(refused)))
            refused = {}
    refused |= never
    report.refused = sorted(refused.items())
    accepted = [item for key, item in keyed.items() if key not in refused]
    if accepted:
        report.added, report.updated = await IntelStore(store).add_many(accepted)
    return report


async def add_feed(settings: "Settings", store: "Store", feed: FeedResult,
                   force: bool = False, actor: str = "") -> IntakeReport:
    report = await add_checked(settings, store, feed.indicators, force, actor)
    report.errors, report.skipped = feed.errors, feed.skipped
    report.expired, report.duplicates = feed.expired, feed.duplicates
    return report


# Polled feeds: their cursors live in feed_state.


async def cursor(store: "Store", name: str) -> str:
    async with store.session() as session:
        state = await session.get(FeedState, name)
        return state.cursor if state else ""


async def save_cursor(store: "Store", name: str, value: str, error: str = "") -> None:
    async with store.session() as session:
        state = await session.get(FeedState, name)
        if state is None:
            state = FeedState(name=name[:255], cursor="", last_error="")
            session.add(state)
        if value:
            state.cursor = value
        state.polled_at = datetime.now(UTC)
        state.last_error = error[:2000]
        await session.commit()


def poll_taxii(collection_url: str, user: str, password: str, added_after: str,
               source: str, category: str | None, verify: bool = True
               ) -> tuple[FeedResult, str]:
    """poll_taxii - the STIX objects a TAXII 2.1 collection added since the cursor.

    Pages are followed (``more``/``next``). The new cursor is the time the
    poll started less a margin for clock skew: an object is read again
    rather than missed, and a repeat only refreshes the indicator.
    """
    from taxii2client.v21 import Collection, as_pages

    from mailward.intel.feeds import MAX_INDICATORS, parse_stix

    started = datetime.now(UTC) - timedelta(minutes=5)
    collection = Collection(collection_url, user=user or None, password=password or None,
                            verify=verify)
    objects: list[dict[str, Any]] = []
    options = {"added_after": added_after} if added_after else {}
    for page in as_pages(collection.get_objects, per_request=1000, **options):
        objects.extend(page.get("objects", []) if isinstance(page, dict) else [])
        if len(objects) > MAX_INDICATORS:
            break
    result = parse_stix({"type": "bundle", "objects": objects}, source, category)
    return result, started.isoformat().replace("+00:00", "Z")


def poll_misp(url: str, key: str, since: str, source: str, verify: bool = True
              ) -> tuple[FeedResult, str]:
    """poll_misp - the to_ids attributes of events published since the cursor.

    PyMISP answers a refused search (4xx) with ``{"errors": ...}`` rather
    than raising; that is an error here, so the cursor does not move past
    events that were never read.
    """
    from pymisp import PyMISP

    from mailward.intel.feeds import FeedError, FeedResult, _misp_attributes

    now = str(int(datetime.now(UTC).timestamp()))
    misp = PyMISP(url, key, ssl=verify, timeout=60)
    answer = misp.search(controller="attributes", to_ids=True,
                         publish_timestamp=since or "14d", pythonify=False)
    if isinstance(answer, dict) and "errors" in answer:
        errors = answer["errors"]
        status = errors[0] if isinstance(errors, (list, tuple)) and errors else ""
        raise FeedError(f"MISP search failed: {status} {str(errors)[:300]}".rstrip())
    attributes = answer.get("Attribute", []) if isinstance(answer, dict) else []
    result = _misp_attributes(attributes, source, None, FeedResult())
    result.dedupe()
    return result, now
