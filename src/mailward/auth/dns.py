"""One asynchronous DNS resolver shared by every check.

Built on dnspython's asyncio resolver with its TTL-respecting cache,
configurable nameservers (``HOST`` or ``HOST:PORT``) and a time-out per
query. Failures are told apart, because SPF, DMARC and DNSBL results depend
on the difference: NXDOMAIN, no data of that type, time-out, and server
failure. With ``[dns] zone_file`` the answers come from an RFC 1035 master
file instead of the network, for air-gapped sites and debugging.

SECURITY: answers come from the network and may be hostile or broken. A
truncated UDP answer is retried over TCP (dnspython does so on the TC bit);
an answer that holds records of another type than asked counts as no data;
a name that is not a valid DNS name (a label over 63 octets, an empty
label, over 255 octets) is never sent and fails as BADNAME; every query runs
under the configured time-out.
"""

from __future__ import annotations

import enum
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.zone

from mailward.config import DnsSettings, parse_hostport

log = logging.getLogger("mailward.dns")


class DnsFailure(enum.StrEnum):
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    BADNAME = "badname"


class DnsError(Exception):
    """A look-up that gave no records, with the kind of failure."""

    def __init__(self, kind: DnsFailure, name: str, rdtype: str) -> None:
        super().__init__(f"{rdtype} {name}: {kind}")
        self.kind = kind
        self.name = name
        self.rdtype = rdtype

    @property
    def is_void(self) -> bool:
        """is_void - NXDOMAIN or no data: a definite empty answer (RFC 7208 4.6.4)."""
        return self.kind in (DnsFailure.NXDOMAIN, DnsFailure.NODATA)


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: its text form and the TTL it came with."""

    text: str
    ttl: int


class Resolver:
    """Asynchronous look-ups with a cache, from the network or a zone file."""

    def __init__(self, settings: DnsSettings | None = None) -> None:
        settings = settings or DnsSettings()
        self.timeout = settings.timeout
        self._zone: dict[tuple[str, int], list[Record]] | None = None
        self._zone_names: set[str] = set()
        if settings.zone_file:
            self._load_zone(settings.zone_file)
        configure = not settings.nameservers
        self._resolver = dns.asyncresolver.Resolver(configure=configure)
        if settings.nameservers:
            servers = []
            for entry in settings.nameservers:
                host, port = parse_hostport(entry, 53)
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            self._resolver.nameservers = servers
        self._resolver.lifetime = settings.timeout
        self._resolver.timeout = max(settings.timeout / 2, 0.5)
        if settings.cache_size:
            self._resolver.cache = dns.resolver.LRUCache(settings.cache_size)
        self.queries = 0

    def _load_zone(self, path: str) -> None:
        try:
            zone = dns.zone.from_file(path, origin=dns.name.root, relativize=False,
                                      check_origin=False)
        except (OSError, dns.exception.DNSException) as error:
            raise ValueError(f"dns.zone_file: cannot read {path}: {error}") from None
        table: dict[tuple[str, int], list[Record]] = {}
        for name, node in zone.nodes.items():
            key = name.to_text().lower().rstrip(".")
            self._zone_names.add(key)
            for rdataset in node.rdatasets:
                table[(key, rdataset.rdtype)] = [Record(_text(r), rdataset.ttl)
                                                 for r in rdataset]
        self._zone = table
        log.info("answering DNS from zone file %s (%d names)", Path(path).name,
                 len(self._zone_names))

    async def lookup(self, name: str, rdtype: str) -> list[Record]:
        """lookup - the records of one name and type, or DnsError."""
        self.queries += 1
        qtype = dns.rdatatype.from_text(rdtype)
        try:
            qname = _name(name)
        except (dns.exception.DNSException, UnicodeError):
            raise DnsError(DnsFailure.BADNAME, name, rdtype) from None
        if self._zone is not None:
            return self._from_zone(name, qtype, rdtype)
        answer = self._cached(qname, qtype)
        if isinstance(answer, DnsFailure):
            raise DnsError(answer, name, rdtype)
        try:
            if answer is None:
                answer = await self._resolver.resolve(qname, qtype, raise_on_no_answer=True,
                                                      search=False)
        except dns.resolver.NXDOMAIN:
            raise DnsError(DnsFailure.NXDOMAIN, name, rdtype) from None
        except dns.resolver.NoAnswer:
            raise DnsError(DnsFailure.NODATA, name, rdtype) from None
        except (dns.resolver.LifetimeTimeout, dns.exception.Timeout):
            raise DnsError(DnsFailure.TIMEOUT, name, rdtype) from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException, OSError):
            raise DnsError(DnsFailure.SERVFAIL, name, rdtype) from None
        rrset = answer.rrset
        if rrset is None or rrset.rdtype != qtype:
            raise DnsError(DnsFailure.NODATA, name, rdtype)
        return [Record(_text(rdata), rrset.ttl) for rdata in rrset]

    def _cached(self, qname: dns.name.Name,
                qtype: int) -> dns.resolver.Answer | DnsFailure | None:
        """_cached - the cache's answer or void, read as dnspython's resolve() reads it.

        The same look-ups in the same order as the resolver makes before it
        sends a query (an NXDOMAIN is cached under the type ANY), without the
        cost of setting up a resolution for an answer already at hand.
        """
        cache = self._resolver.cache
        if not cache:
            return None
        answer = cache.get((qname, qtype, dns.rdataclass.IN))
        if answer is not None:
            return DnsFailure.NODATA if answer.rrset is None else answer
        answer = cache.get((qname, dns.rdatatype.ANY, dns.rdataclass.IN))
        if answer is not None and answer.response.rcode() == dns.rcode.NXDOMAIN:
            return DnsFailure.NXDOMAIN
        return None

    def _from_zone(self, name: str, qtype: int, rdtype: str) -> list[Record]:
        """_from_zone - answer from the loaded master file, following CNAMEs."""
        assert self._zone is not None
        key = name.lower().rstrip(".")
        for _ in range(8):
            records = self._zone.get((key, qtype))
            if records:
                return records
            alias = self._zone.get((key, dns.rdatatype.CNAME))
            if not alias or qtype == dns.rdatatype.CNAME:
                break
            key = alias[0].text.lower().rstrip(".")
        if key in self._zone_names:
            raise DnsError(DnsFailure.NODATA, name, rdtype)
        raise DnsError(DnsFailure.NXDOMAIN, name, rdtype)

    async def txt(self, name: str) -> list[str]:
        """txt - TXT records of a name, each with its strings joined."""
        return [record.text for record in await self.lookup(name, "TXT")]

    async def addresses(self, name: str, rdtype: str = "A") -> list[str]:
        """addresses - the A (or AAAA) records of a name."""
        return [record.text for record in await self.lookup(name, rdtype)]

    async def mx(self, name: str) -> list[tuple[int, str]]:
        """mx - (preference, exchange) of each MX record, lowest preference first."""
        found = []
        for record in await self.lookup(name, "MX"):
            preference, _, host = record.text.partition(" ")
            if preference.isdigit():
                found.append((int(preference), host.rstrip(".").lower()))
        return sorted(found)

    async def ptr(self, name: str) -> list[str]:
        """ptr - the host names a PTR name points to."""
        return [record.text.rstrip(".").lower() for record in await self.lookup(name, "PTR")]


@functools.lru_cache(maxsize=4096)
def _name(text: str) -> dns.name.Name:
    """_name - a query name from text (names are immutable; checks ask the same ones)."""
    return dns.name.from_text(text)


def _text(rdata: object) -> str:
    """_text - a record as text; a TXT record's strings joined (RFC 7208 3.3)."""
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return b"".join(strings).decode("utf-8", "replace")
    return rdata.to_text()  # type: ignore[attr-defined]
