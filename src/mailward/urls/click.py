"""The click-time service: judge a rewritten link again when someone follows it.

A link that was clean at delivery can turn malicious an hour later, so every
click is verified, judged with today's intelligence and the URL's form,
logged per recipient, then redirected (302) or answered with a page that
names the reason: a warning for a suspicious link, a block for a malicious
one; whether the page offers to continue is configured per verdict (never,
by default, for malicious links).

Clicks are written in batches (at most 500 rows, 50 ms apart) so that a
burst of clicks costs one commit, not one each; a queue of pending rows
bounds memory, and a full queue slows the clicks down instead of dropping
them. A gateway that stops writes the pending rows before it closes the
store (``close``, up to ``CLOSE_SECONDS``). TODO: a crash still loses the
clicks of its last 50 ms, so they can be missing from the log that answers
"did anyone click?". Each click is a row of ``clicks``: the message, the recipient (found again
from the opaque recipient id among the message's recipients), the URL and
the hash of its normalised form (``intel.store.url_hash``, as the index and
the post-delivery response use it), the time, client IP and user agent, the
verdict, and whether the click looks automated: a HEAD request, a known
link-scanner user agent, or a fetch within seconds of delivery.

SECURITY: a click link whose signature does not verify is answered 400 and
logged, never redirected, so the service is not an open redirect. The
redirect goes to the WHATWG serialisation of the signed URL, which holds no
control characters, and carries ``Referrer-Policy: no-referrer`` so the
destination never learns the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import insert, select

from mailward.intel.store import url_hash
from mailward.store.models import Click, Delivery, MessageRecord
from mailward.urls import heuristics
from mailward.urls.extract import ExtractedUrl
from mailward.urls.normalize import parse_url
from mailward.urls.reputation import intel_hit, url_signals
from mailward.urls.rewrite import signer_for
from mailward.urls.signing import ClickLink, url_from_query

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.urls")

ALLOWED, WARNED, BLOCKED, THROUGH = "allowed", "warned", "blocked", "clicked-through"
_MALICIOUS = ("phish", "malware", "impostor")
_BATCH_ROWS, _BATCH_WAIT, _QUEUE_ROWS = 500, 0.05, 20_000
# How long a stopping gateway waits for the pending clicks to be written.
CLOSE_SECONDS = 10.0
_RECIPIENT_CACHE, _RECIPIENT_TTL = 10_000, 30.0
_SUSPICIOUS_SIGNALS = ("URL_LOOKALIKE", "URL_USERINFO", "URL_IP_OBFUSCATED", "URL_MIXED_SCRIPT")


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the click service decided about one click."""

    verdict: str            # allowed, warned, blocked, clicked-through
    reason: str
    target: str             # where a redirect goes
    link: ClickLink
    may_continue: bool = False


@dataclass(frozen=True, slots=True)
class Request:
    """The parts of an HTTP request the click service reads."""

    token: str
    query: str
    method: str = "GET"
    client_ip: str = ""
    user_agent: str = ""


class ClickService:
    """Verifies, judges and logs clicks for one gateway."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.settings = gateway.settings.urls
        self.signer = signer_for(gateway.services)
        self.lists = self.services.extras.get("url_lists") or heuristics.load_lists(
            self.settings.lists_file)
        own = list(self.settings.protected_domains) + [
            d.removeprefix("*.") for d in gateway.settings.smtp.accepted_domains]
        self.protected = heuristics.Protected(own, self.lists)
        self.scanners = [re.compile(p) for p in (*self.lists.scanner_agents,
                                                 *self.settings.scanner_agents)]
        self._pending: asyncio.Queue[dict] = asyncio.Queue(maxsize=_QUEUE_ROWS)
        self._writer: asyncio.Task | None = None
        self._known: dict[str, tuple[float, list[str], dict[str, datetime]]] = {}

    def verify(self, request: Request) -> ClickLink:
        """verify - the signed link of a request (``valid`` false when it is not ours)."""
        return self.signer.verify(request.token, url_from_query(request.query))

    async def judge(self, link: ClickLink, confirmed: bool) -> Judgement:
        """judge - today's verdict on a verified link."""
        parsed = parse_url(link.url)
        if parsed is None:
            return Judgement(BLOCKED, "the link is not a web address", "", link)
        await self.services.intel_cache.refresh()
        symbol, hit = intel_hit(self.services.intel_cache, parsed.url)
        verdict, reason, through = ALLOWED, "", True
        if hit is not None and hit.category in _MALICIOUS:
            verdict, through = BLOCKED, self.settings.click_through_malicious
            reason = f"listed as {hit.category} by {hit.source} ({hit.value})"
        elif hit is not None:
            verdict, through = WARNED, self.settings.click_through_suspicious
            reason = f"listed as {hit.category} by {hit.source} ({hit.value})"
        else:
            found = ExtractedUrl(parsed.url, "click", "", raw=link.url, userinfo=parsed.userinfo,
                                 ip_obfuscated=parsed.ip_obfuscated)
            signals = [why for symbol, why in url_signals(found, self.protected, self.lists,
                                                          self.settings)
                       if symbol in _SUSPICIOUS_SIGNALS]
            if signals:
                verdict, through = WARNED, self.settings.click_through_suspicious
                reason = "; ".join(signals)
        if verdict != ALLOWED and confirmed and through:
            verdict = THROUGH
        return Judgement(verdict, reason, parsed.href, link, may_continue=through)

    async def record(self, request: Request, judgement: Judgement) -> dict:
        """record - log the click (who, whether automated); written in the next batch."""
        link = judgement.link
        now = self.services.clock()
        recipients, delivered_at = await self._recipients(link.queue_id)
        recipient = self.signer.recipient_of(link, recipients)
        automated = self.automated(request, delivered_at.get(recipient or ""), now)
        parsed = parse_url(link.url)
        row = {"queue_id": link.queue_id,
               "recipient": (recipient or f"unknown:{link.rid}").lower(),
               "url": link.url[:8192], "url_hash": url_hash(parsed.url if parsed else link.url),
               "clicked_at": now, "client_ip": request.client_ip[:64],
               "user_agent": request.user_agent[:1000], "method": request.method[:8],
               "verdict": judgement.verdict, "reason": judgement.reason[:2000],
               "automated": bool(automated), "automated_reason": automated}
        await self._pending.put(row)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="clicks")
        log.info("%s: click by <%s> on %s: %s%s%s", link.queue_id, row["recipient"],
                 parsed.host if parsed else "-", judgement.verdict,
                 f" ({judgement.reason})" if judgement.reason else "",
                 f" automated: {automated}" if automated else "")
        return row

    async def _recipients(self, queue_id: str) -> tuple[list[str], dict[str, datetime]]:
        """_recipients - a message's recipients and delivery times, cached briefly."""
        cached = self._known.get(queue_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        async with self.services.store.session() as session:
            rows = (await session.execute(select(Delivery.recipient, Delivery.delivered_at)
                                          .where(Delivery.queue_id == queue_id))).all()
            recipients = [row.recipient for row in rows]
            if not recipients:
                stored = await session.scalar(select(MessageRecord.recipients).where(
                    MessageRecord.queue_id == queue_id))
                recipients = list(stored or [])
        delivered = {row.recipient: row.delivered_at for row in rows if row.delivered_at}
        if len(self._known) >= _RECIPIENT_CACHE:
            self._known.clear()
        self._known[queue_id] = (time.monotonic() + _RECIPIENT_TTL, recipients, delivered)
        return recipients, delivered

    async def _write_batches(self) -> None:
        """_write_batches - insert logged clicks in batches, one transaction each."""
        while True:
            rows = [await self._pending.get()]
            deadline = time.monotonic() + _BATCH_WAIT
            while len(rows) < _BATCH_ROWS and (left := deadline - time.monotonic()) > 0:
                try:
                    rows.append(await asyncio.wait_for(self._pending.get(), left))
                except TimeoutError:
                    break
            try:
                async with self.services.store.session() as session:
                    await session.execute(insert(Click), rows)
                    await session.commit()
            except Exception:
                log.exception("%d clicks could not be logged", len(rows))
            finally:
                for _ in rows:
                    self._pending.task_done()

    async def flush(self) -> None:
        """flush - wait until every click logged so far is in the store."""
        if self._writer is not None and not self._writer.done():
            await self._pending.join()

    async def close(self) -> None:
        """close - write the pending clicks (for at most CLOSE_SECONDS), then stop."""
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(self.flush(), CLOSE_SECONDS)
        except TimeoutError:
            log.error("%d clicks not logged: the store did not take them in %gs",
                      self._pending.qsize(), CLOSE_SECONDS)
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)
        self._writer = None

    def automated(self, request: Request, delivered: datetime | None, now: datetime) -> str:
        """automated - why a click looks like a machine's, or ''."""
        if request.method == "HEAD":
            return "HEAD request"
        if not request.user_agent.strip():
            return "no user agent"
        for pattern in self.scanners:
            if pattern.search(request.user_agent):
                return f"scanner user agent ({pattern.pattern})"
        if delivered is not None:
            if delivered.tzinfo is None:
                delivered = delivered.replace(tzinfo=UTC)
            seconds = (now - delivered).total_seconds()
            if 0 <= seconds < self.settings.scanner_window:
                return f"{seconds:.1f}s after delivery"
        return ""


def click_service(gateway: "Gateway") -> ClickService:
    """click_service - the gateway's click service, built once."""
    service = gateway.services.extras.get("click_service")
    if service is None:
        service = ClickService(gateway)
        gateway.services.extras["click_service"] = service
    return service
