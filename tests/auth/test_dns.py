"""The shared resolver against a real DNS server: failures told apart, TCP, cache, zone file."""

from __future__ import annotations

import asyncio

import pytest

from mailward.auth.dns import DnsError, DnsFailure, Resolver
from mailward.config import DnsSettings


def resolver(server, **values) -> Resolver:
    return Resolver(DnsSettings(nameservers=[server.address], timeout=1.0, **values))


def failure(coroutine) -> DnsFailure:
    with pytest.raises(DnsError) as raised:
        asyncio.run(coroutine)
    return raised.value.kind


def test_failures_are_told_apart(dns_server):
    dns_server.set({"a.example.org": {"A": ["192.0.2.1"]}, "slow.example.org": "TIMEOUT",
                    "broken.example.org": "SERVFAIL",
                    "typed.example.org": {"A": ["192.0.2.2"], "TXT": "TIMEOUT"}})
    dns = resolver(dns_server)
    assert failure(dns.lookup("missing.example.org", "A")) == DnsFailure.NXDOMAIN
    assert failure(dns.lookup("a.example.org", "TXT")) == DnsFailure.NODATA
    assert failure(dns.lookup("slow.example.org", "A")) == DnsFailure.TIMEOUT
    assert failure(dns.lookup("broken.example.org", "A")) == DnsFailure.SERVFAIL
    assert failure(dns.lookup("typed.example.org", "TXT")) == DnsFailure.TIMEOUT
    assert failure(dns.lookup("a" * 64 + ".example.org", "A")) == DnsFailure.BADNAME
    assert failure(dns.lookup("a..example.org", "A")) == DnsFailure.BADNAME
    assert not DnsError(DnsFailure.BADNAME, "x", "A").is_void


def test_an_answer_of_the_wrong_type_is_no_data(dns_server):
    dns_server.set({"odd.example.org": {"A": ["192.0.2.7"], "WRONG": {"TXT": "A"}}})
    assert failure(resolver(dns_server).lookup("odd.example.org", "TXT")) == DnsFailure.NODATA


def test_truncated_answers_are_retried_over_tcp(dns_server):
    big = ["v=spf1 " + " ".join(f"ip4:198.51.100.{i}" for i in range(120))]
    dns_server.set({"big.example.org": {"TXT": big}})
    [text] = asyncio.run(resolver(dns_server).txt("big.example.org"))
    assert text == big[0]
    transports = [t for n, q, t in dns_server.resolver.transports if n == "big.example.org"]
    assert transports == ["udp", "tcp"]


def test_answers_are_cached_for_their_ttl(dns_server):
    dns_server.set({"c.example.org": {"A": ["192.0.2.3"]},
                    "alias.example.org": {"CNAME": ["c.example.org"]}})
    dns = resolver(dns_server)

    async def twice():
        first = await dns.addresses("c.example.org")
        second = await dns.addresses("c.example.org")
        alias = await dns.addresses("alias.example.org")
        return first, second, alias

    first, second, alias = asyncio.run(twice())
    assert first == second == alias == ["192.0.2.3"]
    assert [n for n, _ in dns_server.queries].count("c.example.org") == 1


def test_cached_answers_are_told_apart_as_fresh_ones(dns_server):
    dns_server.set({"a.example.org": {"A": ["192.0.2.1"]},
                    "alias.example.org": {"CNAME": ["a.example.org"]},
                    "odd.example.org": {"A": ["192.0.2.7"], "WRONG": {"TXT": "A"}}})
    dns = resolver(dns_server)
    asked = [("missing.example.org", "A"), ("a.example.org", "TXT"), ("a.example.org", "A"),
             ("alias.example.org", "A"), ("odd.example.org", "TXT")]

    async def outcome(name: str, rdtype: str):
        try:
            return await dns.lookup(name, rdtype)
        except DnsError as error:
            return error.kind

    async def rounds():
        return [[await outcome(*query) for query in asked] for _ in range(3)]

    first, second, third = asyncio.run(rounds())
    assert first == second == third
    assert first[:2] == [DnsFailure.NXDOMAIN, DnsFailure.NODATA]
    assert [record.text for record in first[3]] == ["192.0.2.1"]
    assert len(dns_server.queries) == len(set(dns_server.queries)) <= len(asked) + 1


def test_mx_and_ptr_helpers(dns_server):
    dns_server.set({"m.example.org": {"MX": ["20 b.example.org", "10 a.example.org"]},
                    "1.2.0.192.in-addr.arpa": {"PTR": ["host.example.org"]}})
    dns = resolver(dns_server)
    assert asyncio.run(dns.mx("m.example.org")) == [(10, "a.example.org"), (20, "b.example.org")]
    assert asyncio.run(dns.ptr("1.2.0.192.in-addr.arpa")) == ["host.example.org"]


def test_zone_file_answers_without_the_network(tmp_path):
    zone = tmp_path / "site.zone"
    zone.write_text('$TTL 60\nexample.org. IN TXT "v=spf1 -all"\n'
                    "www.example.org. IN CNAME host.example.org.\n"
                    "host.example.org. IN A 192.0.2.9\n")
    dns = Resolver(DnsSettings(zone_file=str(zone)))
    assert asyncio.run(dns.txt("example.org")) == ["v=spf1 -all"]
    assert asyncio.run(dns.addresses("www.example.org")) == ["192.0.2.9"]
    assert failure(dns.lookup("example.org", "A")) == DnsFailure.NODATA
    assert failure(dns.lookup("nope.example.org", "A")) == DnsFailure.NXDOMAIN
    with pytest.raises(ValueError):
        Resolver(DnsSettings(zone_file=str(tmp_path / "missing.zone")))
