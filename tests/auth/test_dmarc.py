"""DMARC: policy discovery, alignment, policies and the From-header faults, over real DNS."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from mailward.auth.dmarc import (AuthInputs, DmarcEvaluator, DmarcRecordError, PolicyFinder,
                                 parse_record)
from mailward.auth.dns import Resolver
from mailward.config import DnsSettings

ZONE = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:agg@example.com"]},
    "_dmarc.strict.example": {"TXT": ["v=DMARC1; p=quarantine; adkim=s; aspf=s"]},
    "_dmarc.sampled.example": {"TXT": ["v=DMARC1; p=reject; pct=0"]},
    "_dmarc.np.example": {"TXT": ["v=DMARC1; p=none; sp=quarantine; np=reject"]},
    "real.np.example": {"A": ["192.0.2.1"]},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.norua.example": {"TXT": ["v=DMARC1; p=bogus"]},
    "_dmarc.slow.example": "TIMEOUT",
    "_dmarc.example": {"TXT": ["v=DMARC1; p=none; psd=y"]},
    "_dmarc.org.walk.example": {"TXT": ["v=DMARC1; p=reject; psd=n"]},
}


def evaluator(server, method="psl") -> DmarcEvaluator:
    resolver = Resolver(DnsSettings(nameservers=[server.address], timeout=1.0))
    return DmarcEvaluator(PolicyFinder(resolver, method), random.Random(7))


def run(coroutine):
    return asyncio.run(coroutine)


def test_record_parsing():
    record = parse_record("v=DMARC1; p=Reject; sp=none; pct=50; adkim=s; rua=mailto:a@b.example")
    assert (record.p, record.sp, record.pct, record.adkim, record.aspf) == (
        "reject", "none", 50, "s", "r")
    assert parse_record("v=DMARC1; p=bogus; rua=mailto:a@b.example").p == "none"
    for bad in ("p=reject; v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC2; p=none", "v=DMARC1; p"):
        with pytest.raises(DmarcRecordError):
            parse_record(bad)


def test_alignment_and_policies(dns_server):
    dns_server.set(ZONE)
    dmarc = evaluator(dns_server)
    relaxed = run(dmarc.evaluate("news.example.com", AuthInputs("bounce.example.com", "pass")))
    assert relaxed.result == "pass" and relaxed.spf_aligned
    assert relaxed.policy_domain == "example.com"
    failing = run(dmarc.evaluate("example.com", AuthInputs("other.example.net", "pass",
                                                           (("example.net", "s", "pass"),))))
    assert failing.result == "fail" and failing.disposition == "reject"
    sub = run(dmarc.evaluate("news.example.com", AuthInputs()))
    assert sub.disposition == "quarantine"
    strict = run(dmarc.evaluate("strict.example", AuthInputs("", "none",
                                                             (("mail.strict.example", "s", "pass"),))))
    assert strict.result == "fail"
    partial = run(dmarc.evaluate("example.com", AuthInputs("", "none",
                                                           (("example.com", "s", "policy"),))))
    assert partial.result == "fail"


def test_pct_np_and_broken_records(dns_server):
    dns_server.set(ZONE)
    dmarc = evaluator(dns_server)
    sampled = run(dmarc.evaluate("sampled.example", AuthInputs()))
    assert sampled.disposition == "quarantine" and sampled.override == "sampled_out"
    assert run(dmarc.evaluate("ghost.np.example", AuthInputs())).disposition == "reject"
    assert run(dmarc.evaluate("real.np.example", AuthInputs())).disposition == "quarantine"
    assert run(dmarc.evaluate("two.example", AuthInputs())).result == "none"
    assert run(dmarc.evaluate("norua.example", AuthInputs())).result == "none"
    assert run(dmarc.evaluate("slow.example", AuthInputs())).result == "temperror"


def test_tree_walk_finds_the_organizational_domain(dns_server):
    dns_server.set(ZONE)
    walk = evaluator(dns_server, "tree-walk")
    outcome = run(walk.evaluate("a.b.org.walk.example", AuthInputs("x.org.walk.example", "pass")))
    assert outcome.policy_domain == "org.walk.example" and outcome.result == "pass"
    # psd=y on the suffix: the organizational domain is the label below it.
    psd = run(walk.evaluate("mail.shop.example", AuthInputs("shop.example", "pass")))
    assert psd.result == "pass"
    other = run(walk.evaluate("mail.shop.example", AuthInputs("evil.example", "pass")))
    assert other.result == "fail"


def test_case_c11_strictest_policy_of_several_from_domains(dns_server, shared):
    dns = json.loads((shared / "cases/C_dkim_dns.json").read_text())["dns"]
    dns_server.set(dns)
    policy, owner = run(evaluator(dns_server).strictest(["example.com", "example.net"]))
    assert (policy, owner) == ("reject", "example.com")
