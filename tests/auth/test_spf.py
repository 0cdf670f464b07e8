"""SPF: the RFC 7208 suite and the field cases, over a real DNS server."""

from __future__ import annotations

import asyncio
import json

import pytest

from mailward.auth.dns import Resolver
from mailward.auth.spf import DEFAULT_EXPLANATION, SpfEvaluator, SpfResult, parse_record
from mailward.config import DnsSettings
from tests.auth import spfsuite
from tests.support.dnsserver import DnsTestServer
from tests.support.gateway import SHARED

SUITE = SHARED / "corpus/spf/rfc7208-tests.yml"
CASES = spfsuite.cases(SUITE) if SUITE.exists() else []
SCENARIOS = spfsuite.load(SUITE) if SUITE.exists() else []


@pytest.fixture(scope="module")
def suite_servers():
    """suite_servers - one real DNS server per scenario, started when first needed."""
    servers: dict[int, DnsTestServer] = {}

    def get(index: int) -> DnsTestServer:
        if index not in servers:
            zone = spfsuite.zone(SCENARIOS[index].get("zonedata", {}))
            servers[index] = DnsTestServer(zone).start()
        return servers[index]

    yield get
    for server in servers.values():
        server.stop()


def resolver_for(server: DnsTestServer, timeout: float = 1.0) -> Resolver:
    return Resolver(DnsSettings(nameservers=[server.address], timeout=timeout))


def evaluate(server: DnsTestServer, ip: str, mail_from: str, helo: str):
    evaluator = SpfEvaluator(resolver_for(server), receiver="mx.example.org")
    return asyncio.run(evaluator.check_mail_from(ip, mail_from, helo))


@pytest.mark.parametrize("index,name,test", CASES,
                         ids=[f"{SCENARIOS[i]['description'][:24]}:{n}" for i, n, _ in CASES])
def test_rfc7208_suite(index, name, test, suite_servers, shared):
    outcome = evaluate(suite_servers(index), test["host"], test["mailfrom"], test["helo"])
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert str(outcome.result) in expected, outcome.reason
    if "explanation" in test and outcome.result == SpfResult.FAIL:
        wanted = DEFAULT_EXPLANATION if test["explanation"] == "DEFAULT" else test["explanation"]
        assert outcome.explanation == wanted


def test_the_whole_suite_is_present(shared):
    assert len(CASES) == 203


def _case(shared, name: str) -> dict:
    return json.loads((shared / "cases" / name).read_text())


def test_processing_limits_of_case_c12(shared):
    case = _case(shared, "C12_spf_limits.json")
    with DnsTestServer(case["dns"]) as server:
        for query in case["queries"]:
            outcome = evaluate(server, query["client_ip"], query["mail_from"], query["helo"])
            assert outcome.result == query["expected"], (query, outcome.reason)


def test_macro_expansion_of_case_c14(shared):
    case = _case(shared, "C14_spf_macros.json")
    with DnsTestServer(case["dns"]) as server:
        for query in case["queries"]:
            server.clear_queries()
            outcome = evaluate(server, query["client_ip"], query["mail_from"], "mx.example.org")
            assert outcome.result == query["expected"], (query, outcome.reason)
            names = {name for name, _ in server.queries}
            if "must_query" in query:
                assert query["must_query"] in names
                assert query["must_not_query"] not in names


def test_an_include_loop_is_a_permerror(dns_server):
    dns_server.set({"loop.example.org": {"TXT": ["v=spf1 include:loop2.example.org -all"]},
                    "loop2.example.org": {"TXT": ["v=spf1 include:loop.example.org -all"]},
                    "self.example.org": {"TXT": ["v=spf1 redirect=self.example.org"]}})
    for sender in ("a@loop.example.org", "a@self.example.org"):
        outcome = evaluate(dns_server, "192.0.2.1", sender, "h.example.org")
        assert outcome.result == SpfResult.PERMERROR
        assert "DNS-querying terms" in outcome.reason


def test_duplicated_and_non_ascii_records(dns_server):
    dns_server.set({"two.example.org": {"TXT": ["v=spf1 -all", "v=spf1 +all"]},
                    "utf.example.org": {"TXT": ["v=spf1 a:caf\u00e9.example.org -all"]},
                    "huge.example.org": {"TXT": ["v=spf1 " + " ".join(
                        f"ip4:198.51.100.{i}" for i in range(200)) + " -all"]}})
    assert evaluate(dns_server, "192.0.2.1", "a@two.example.org", "h").result == "permerror"
    assert evaluate(dns_server, "192.0.2.1", "a@utf.example.org", "h").result == "permerror"
    # A record over 512 bytes comes truncated over UDP and whole over TCP.
    dns_server.clear_queries()
    huge = evaluate(dns_server, "198.51.100.150", "a@huge.example.org", "h")
    assert huge.result == SpfResult.PASS
    assert ("huge.example.org", "TXT", "tcp") in dns_server.resolver.transports


def test_dns_failures_are_temperror(dns_server):
    dns_server.set({"slow.example.org": "TIMEOUT", "broken.example.org": "SERVFAIL",
                    "inc.example.org": {"TXT": ["v=spf1 include:broken.example.org -all"]}})
    for sender in ("a@slow.example.org", "a@broken.example.org", "a@inc.example.org"):
        assert evaluate(dns_server, "192.0.2.1", sender, "h").result == "temperror"


def test_the_parser_rejects_garbage_without_raising():
    for text in ("v=spf1 ip4:300.1.1.1", "v=spf1 a:%{z}.example.org", "v=spf1 mx//129",
                 "v=spf1 redirect=a.example redirect=b.example", "v=spf1 \x00"):
        with pytest.raises(Exception) as raised:
            parse_record(text)
        assert getattr(raised.value, "result", None) == SpfResult.PERMERROR
