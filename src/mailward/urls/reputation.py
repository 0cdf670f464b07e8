"""URL reputation: the message's URLs against the intelligence and the heuristics.

A URL matches the intelligence by its normalised form, by its host or any
parent domain, or by the IP of an IP-literal host. The category of such a
finding is the indicator's (phishing or malware). The heuristics
(``urls.heuristics``) each give one finding per message, whose evidence
names the URLs and where they were found; ``javascript:`` and navigable
``data:`` URIs and links found in QR codes are findings of their own. A
registrable domain that this gateway has never seen in accepted mail is a
finding once the gateway has seen enough domains to tell.

No URL is fetched: prefetching burns one-time login links.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import ClassVar
from urllib.parse import urlsplit

from sqlalchemy import func, select

from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.store.models import UrlDomain
from mailward.urls import heuristics, index
from mailward.urls.extract import ExtractedUrl
from mailward.urls.normalize import parse_url
from mailward.verdict import Category, Finding

log = logging.getLogger("mailward.urls")

_EVIDENCE_URLS = 5
_HEURISTIC_SYMBOLS = {
    "URL_IP_HOST": "a link goes to an IP address instead of a name",
    "URL_IP_OBFUSCATED": "a link's IP host is written as one number, in octal or in hex",
    "URL_PUNYCODE": "a link's host is an internationalised (punycode) name",
    "URL_MIXED_SCRIPT": "a link's host mixes letters of several scripts in one label",
    "URL_LOOKALIKE": "a link's host imitates a protected domain or a known brand",
    "URL_BRAND_IN_HOST": "a link's host carries a brand's name on a domain the brand does not own",
    "URL_USERINFO": "a link has a user@ part before its host (it hides the real host)",
    "URL_ANCHOR_MISMATCH": "a link's text names another domain than the link goes to",
    "URL_SHORTENER": "a link goes through a URL shortener",
    "URL_FREE_HOSTING": "a link goes to a free web hosting service",
    "URL_FORM_SERVICE": "a link goes to a hosted form service",
    "URL_MANY_SUBDOMAINS": "a link's host has an excessive number of subdomains",
    "URL_LONG": "a link is excessively long",
    "URL_NEW_DOMAIN": "a link's domain was never seen before in accepted mail",
    "URL_SCRIPT_URI": "a javascript: or vbscript: URI where a link is expected",
    "URL_DATA_URI": "a data: URI where a link or frame is expected",
    "URL_QR_CODE": "a link is hidden in a QR code image",
}


# How often the number of known domains is counted while under the warm-up.
_RECOUNT_SECONDS = 5.0
# Domains remembered as seen before the memory is cleared and refilled.
_SEEN_MAX = 200_000


class UrlReputationCheck:
    """Look each URL up in the intelligence and judge its form."""

    name: ClassVar[str] = "url_reputation"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "URL_BLOCKLISTED": "a URL is known to be malicious",
        "URL_DOMAIN_BLOCKLISTED": "a URL's domain is known to be malicious",
        "URL_IP_BLOCKLISTED": "a URL's IP host is known to be malicious",
        **_HEURISTIC_SYMBOLS,
    }

    def __init__(self, services: Services, lists: heuristics.Lists) -> None:
        settings = services.settings
        self.services = services
        self.cache = services.intel_cache
        self.settings = settings.urls
        self.lists = lists
        own = list(settings.urls.protected_domains) + [
            d.removeprefix("*.") for d in settings.smtp.accepted_domains]
        self.protected = heuristics.Protected(own, lists)
        # The gateway's own web service: its links are not a sender's.
        self.own_hosts = {host.lower() for host in (urlsplit(settings.public_url).hostname,
                                                    urlsplit(settings.click_base).hostname)
                          if host}
        self._known_domains = 0
        self._counted_at = float("-inf")
        self._recorded = -1
        self._seen: set[str] = set()

    @classmethod
    def from_services(cls, services: Services) -> "UrlReputationCheck":
        """from_services - the check with the lists and protected domains of the settings."""
        lists = heuristics.load_lists(services.settings.urls.lists_file)
        services.extras["url_lists"] = lists
        return cls(services, lists)

    async def check(self, task: Task) -> list[Finding]:
        """check - intelligence, form, script URIs and never-seen domains of one message."""
        assert task.message is not None
        await self.cache.refresh()
        extraction = task.message.url_extraction
        findings = self.intelligence(extraction.urls)
        findings.extend(self.form(extraction.places))
        findings.extend(_scripts(extraction.scripts))
        findings.extend(await self.new_domains(extraction.urls))
        return findings

    # Intelligence.

    def intelligence(self, urls: list[ExtractedUrl]) -> list[Finding]:
        """intelligence - one finding per URL the intelligence knows."""
        findings = []
        for found in urls:
            symbol, hit = intel_hit(self.cache, found.url)
            if hit is None:
                continue
            category = Category.MALWARE if hit.category == "malware" else Category.PHISH
            findings.append(Finding(symbol, category,
                                    f"{found.url} ({found.where}) listed as {hit.category} "
                                    f"by {hit.source}",
                                    data={"url": found.url, "where": found.where,
                                          "indicator": hit.value, "source": hit.source}))
        return findings

    # Heuristics.

    def form(self, places: list[ExtractedUrl]) -> list[Finding]:
        """form - one finding per heuristic that fires, naming the URLs it fired on."""
        fired: dict[str, list[tuple[ExtractedUrl, str]]] = defaultdict(list)
        for found in places:
            if self.ours(found):
                continue
            for symbol, why in url_signals(found, self.protected, self.lists, self.settings):
                fired[symbol].append((found, why))
        findings = []
        for symbol, hits in fired.items():
            distinct = list({found.url: (found, why) for found, why in hits}.values())
            shown = "; ".join(f"{found.url} ({found.where}: {why})"
                              for found, why in distinct[:_EVIDENCE_URLS])
            extra = len(distinct) - _EVIDENCE_URLS
            more = f" and {extra} more" if extra > 0 else ""
            findings.append(Finding(symbol, _category(symbol), shown + more,
                                    data={"urls": [f.url for f, _ in distinct],
                                          "where": [f.where for f, _ in distinct]}))
        return findings

    def ours(self, found: ExtractedUrl) -> bool:
        """ours - a link to this gateway's own web service (a click or report link).

        A delivered copy carries them, and a user forwards or reports that copy;
        the link inside a click link is extracted and judged on its own.
        """
        return found.host.lower() in self.own_hosts

    # Never seen.

    async def new_domains(self, urls: list[ExtractedUrl]) -> list[Finding]:
        """new_domains - registrable domains no accepted message carried before."""
        warmup = self.settings.new_domain_warmup
        domains = {heuristics.registrable(u.host): u for u in urls
                   if u.host and not self.ours(u)}
        domains = {d: u for d, u in domains.items() if not self.protected.owned(d)}
        if not domains:
            return []
        if self._known_domains < warmup:
            # Until the store knows enough domains the signal stays off; the
            # count is asked again when this process recorded domains, or
            # every few seconds for other nodes' writes, not per message.
            now = time.monotonic()
            if (now - self._counted_at < _RECOUNT_SECONDS
                    and index.recorded == self._recorded):
                return []
            self._counted_at, self._recorded = now, index.recorded
            async with self.services.store.reading() as session:
                self._known_domains = await session.scalar(
                    select(func.count()).select_from(UrlDomain)) or 0
            if self._known_domains < warmup:
                return []
        # A domain once seen stays seen, so only unseen ones are asked for.
        unseen = [d for d in domains if d not in self._seen][:500]
        known: set[str] = set()
        if unseen:
            async with self.services.store.reading() as session:
                known = set((await session.scalars(select(UrlDomain.domain).where(
                    UrlDomain.domain.in_(unseen)))).all())
            if len(self._seen) + len(known) > _SEEN_MAX:
                self._seen.clear()
            self._seen.update(known)
        known |= self._seen & domains.keys()
        new = [u for d, u in domains.items() if d not in known]
        if not new:
            return []
        shown = ", ".join(heuristics.registrable(u.host) for u in new[:_EVIDENCE_URLS])
        return [Finding("URL_NEW_DOMAIN", Category.PHISH, f"never seen before: {shown}",
                        data={"urls": [u.url for u in new]})]


def intel_hit(cache, url: str):
    """intel_hit - (symbol, hit) of the intelligence for one URL, or (symbol, None)."""
    hit = cache.url(url)
    if hit is not None:
        return "URL_BLOCKLISTED", hit
    parsed = parse_url(url)
    host = parsed.host if parsed else ""
    if parsed is not None and parsed.ip_host:
        return "URL_IP_BLOCKLISTED", cache.ip(host.strip("[]"))
    return "URL_DOMAIN_BLOCKLISTED", cache.domain(host) if host else None


def url_signals(found: ExtractedUrl, protected: heuristics.Protected,
                lists: heuristics.Lists, settings) -> list[tuple[str, str]]:
    """url_signals - (symbol, why) for each heuristic one URL sets off."""
    parsed = parse_url(found.url)
    if parsed is None:
        return []
    host, signals = parsed.host, []
    path = found.url.split(host, 1)[-1]
    if parsed.ip_host:
        signals.append(("URL_IP_HOST", host))
    if found.ip_obfuscated:
        signals.append(("URL_IP_OBFUSCATED", "host written as " + _written(found.raw)))
    if found.userinfo:
        signals.append(("URL_USERINFO", f"{found.userinfo[:60]}@ before {host}"))
    if not parsed.ip_host:
        signals.extend(_name_signals(host, protected))
        if heuristics.subdomain_count(host) > settings.max_subdomains:
            signals.append(("URL_MANY_SUBDOMAINS",
                            f"{heuristics.subdomain_count(host)} subdomain labels"))
    if len(found.url) > settings.max_length:
        signals.append(("URL_LONG", f"{len(found.url)} characters"))
    for symbol, entries in (("URL_SHORTENER", lists.shorteners),
                            ("URL_FREE_HOSTING", lists.free_hosting),
                            ("URL_FORM_SERVICE", lists.form_services)):
        entry = heuristics.matches_service(host, path, entries)
        if entry:
            signals.append((symbol, entry))
    if found.text:
        shown = heuristics.anchor_mismatch(found.text, host)
        if shown:
            signals.append(("URL_ANCHOR_MISMATCH", f"text shows {shown}"))
    if found.where.startswith("qr:"):
        signals.append(("URL_QR_CODE", found.where))
    return signals


def _name_signals(host: str, protected: heuristics.Protected) -> list[tuple[str, str]]:
    """_name_signals - signals of a host name: punycode, mixed scripts, lookalikes."""
    signals = []
    if any(label.startswith("xn--") for label in host.split(".")):
        signals.append(("URL_PUNYCODE", heuristics.to_unicode(host)))
        if any(heuristics.is_mixed_script(label) for label in
               heuristics.to_unicode(host).split(".")):
            signals.append(("URL_MIXED_SCRIPT", heuristics.to_unicode(host)))
    lookalike = protected.lookalike(host)
    if lookalike is not None:
        symbol = "URL_BRAND_IN_HOST" if lookalike.how.startswith("brand") else "URL_LOOKALIKE"
        signals.append((symbol, f"looks like {lookalike.target} ({lookalike.how})"))
    return signals


def _written(raw: str) -> str:
    """_written - the host as it was written in the raw URL."""
    rest = raw.split("//", 1)[-1]
    return rest.split("/", 1)[0][:80]


def _category(symbol: str) -> Category:
    """_category - spam for the weak form signals, phishing for the rest."""
    return Category.SPAM if symbol in ("URL_LONG", "URL_MANY_SUBDOMAINS") else Category.PHISH


def _scripts(scripts) -> list[Finding]:
    """_scripts - one finding each for script URIs and data URIs."""
    findings = []
    for symbol, kinds in (("URL_SCRIPT_URI", ("javascript", "vbscript")),
                          ("URL_DATA_URI", ("data",))):
        hits = [s for s in scripts if s.scheme in kinds]
        if hits:
            shown = "; ".join(f"{s.value[:80]} ({s.where})" for s in hits[:_EVIDENCE_URLS])
            findings.append(Finding(symbol, Category.PHISH, shown,
                                    data={"uris": [s.value[:200] for s in hits[:50]]}))
    return findings
