"""DNS blocklists: is the client IP listed in the configured zones?

The look-ups of all zones run at once under one time-out. A listing is the
zone answering an A record in 127.0.0.0/8 for the reversed address (RFC
5782); 127.255.255.254/255 are the lists' own "query refused" codes and do
not count. A configured number of zones must agree before the client is
refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import ClassVar

from mailward.auth.dns import DnsError
from mailward.connection.lists import in_networks
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

_REFUSED_CODES = {"127.255.255.252", "127.255.255.254", "127.255.255.255"}


def reversed_name(ip: str) -> str | None:
    """reversed_name - the DNSBL query label of an address (RFC 5782 2.1, 2.4)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


class DnsblCheck:
    """Query each DNSBL zone for the client address."""

    name: ClassVar[str] = "dnsbl"
    stage: ClassVar[Stage] = Stage.CONNECT
    after: ClassVar[tuple[str, ...]] = ("connection_lists",)
    symbols: ClassVar[dict[str, str]] = {
        "DNSBL_LISTED": "client IP is listed by fewer DNSBL zones than needed to refuse it",
        "DNSBL_REJECT": "client IP is listed by enough DNSBL zones to be refused",
        "DNSBL_TEMPFAIL": "a DNSBL look-up timed out or failed",
    }

    def __init__(self, services: Services, zones: list[str], required: int,
                 timeout: float, skip: list[str]) -> None:
        self.resolver = services.resolver
        self.skip = [ipaddress.ip_network(network) for network in skip]
        self.zones = zones
        self.required = required
        self.timeout = timeout

    @classmethod
    def from_services(cls, services: Services) -> "DnsblCheck | None":
        settings = services.settings.connection
        if not settings.dnsbl_zones:
            return None
        return cls(services, settings.dnsbl_zones, settings.dnsbl_required,
                   settings.dnsbl_timeout, settings.dnsbl_skip)

    async def _query(self, label: str, zone: str) -> tuple[str, list[str] | None]:
        try:
            records = await self.resolver.lookup(f"{label}.{zone}", "A")
        except DnsError as error:
            if error.is_void:
                return zone, []
            return zone, None
        codes = [r.text for r in records if r.text.startswith("127.")
                 and r.text not in _REFUSED_CODES]
        return zone, codes

    async def check(self, task: Task) -> list[Finding]:
        if task.found("CONN_ALLOWLISTED"):
            return []
        label = reversed_name(task.envelope.peer_ip)
        if label is None or in_networks(task.envelope.peer_ip, self.skip) is not None:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                answers = await asyncio.gather(*(self._query(label, z) for z in self.zones))
        except TimeoutError:
            return [Finding("DNSBL_TEMPFAIL", Category.SPAM,
                            f"DNSBL look-ups took longer than {self.timeout:g}s")]
        listed = {zone: codes for zone, codes in answers if codes}
        failed = [zone for zone, codes in answers if codes is None]
        findings = []
        if failed:
            findings.append(Finding("DNSBL_TEMPFAIL", Category.SPAM,
                                    f"look-up failed at {', '.join(failed)}"))
        if listed:
            detail = "; ".join(f"{zone} {'/'.join(codes)}" for zone, codes in listed.items())
            symbol = "DNSBL_REJECT" if len(listed) >= self.required else "DNSBL_LISTED"
            findings.append(Finding(symbol, Category.SPAM,
                                    f"{task.envelope.peer_ip} listed by {detail}",
                                    weight=float(len(listed)), data={"zones": sorted(listed)}))
        return findings
