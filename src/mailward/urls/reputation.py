"""URL reputation: the message's URLs against the threat intelligence.

A URL matches by its normalised form or by its host or any parent domain of
it. The finding's category is the indicator's (phishing or malware), and its
evidence names the URL, where in the message it was found, and the source.
No URL is fetched: prefetching burns one-time login links.
"""

from __future__ import annotations

from typing import ClassVar

from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding


class UrlReputationCheck:
    """Look each URL and its domain up in the intelligence store."""

    name: ClassVar[str] = "url_reputation"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "URL_BLOCKLISTED": "a URL is known to be malicious",
        "URL_DOMAIN_BLOCKLISTED": "a URL's domain is known to be malicious",
    }

    def __init__(self, services: Services) -> None:
        self.cache = services.intel_cache

    @classmethod
    def from_services(cls, services: Services) -> "UrlReputationCheck":
        return cls(services)

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        await self.cache.refresh()
        findings = []
        for found in task.message.urls:
            hit = self.cache.url(found.url)
            symbol = "URL_BLOCKLISTED"
            if hit is None:
                hit = self.cache.domain(found.host)
                symbol = "URL_DOMAIN_BLOCKLISTED"
            if hit is None:
                continue
            category = Category.MALWARE if hit.category == "malware" else Category.PHISH
            findings.append(Finding(symbol, category,
                                    f"{found.url} ({found.where}) listed as {hit.category} "
                                    f"by {hit.source}",
                                    data={"url": found.url, "where": found.where,
                                          "indicator": hit.value, "source": hit.source}))
        return findings
