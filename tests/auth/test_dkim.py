"""DKIM: the labelled corpora and the field cases, keys served by a real DNS server."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from mailward.auth.dkim import DkimVerifier, symbol_of
from mailward.auth.dns import Resolver
from mailward.config import DnsSettings
from mailward.mime import canonicalize
from tests.support.dnsserver import DnsTestServer
from tests.support.gateway import SHARED

PERL = SHARED / "corpus/dkim/perl-mail-dkim"


def perl_zone() -> dict:
    """perl_zone - FAKE_DNS.dat as a test-server zone."""
    zone: dict = {}
    for line in (PERL / "FAKE_DNS.dat").read_text().splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        if value == "NXDOMAIN":
            zone[name] = "NXDOMAIN"
        elif value == "~~Query timed out~~":
            zone[name] = "TIMEOUT"
        elif value.startswith("~~"):
            zone[name] = "SERVFAIL"
        else:
            zone[name] = {"TXT": ["" if value == '""' else value]}
    return zone


def expected_rows() -> list[tuple[str, str, str]]:
    if not PERL.exists():
        return []
    with open(PERL / "expected-results.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    return [(r[0], r[1], r[2] if len(r) > 2 else "") for r in rows]


@pytest.fixture(scope="module")
def perl_dns():
    with DnsTestServer(perl_zone()) as server:
        yield server


def verify(server, raw: bytes, **options):
    resolver = Resolver(DnsSettings(nameservers=[server.address], timeout=1.0))
    return asyncio.run(DkimVerifier(resolver, **options).verify(canonicalize(raw)[0]))


# Upstream (Perl Mail::DKIM) follows RFC 4871: it accepts rsa-sha1, 512-bit keys and
# enforces the key's g= tag. Its table is reproduced with those allowances; the
# default verifier must then refuse what RFC 8301 forbids.
LEGACY = dict(accept_sha1=True, min_key_bits=512, rfc4871_granularity=True)


def outcome(results) -> str:
    """outcome - the table's word for a message: its best signature (pass, fail, invalid)."""
    if not results:
        return "none"
    words = {r.result for r in results}
    return "pass" if "pass" in words else "fail" if "fail" in words else "invalid"


@pytest.mark.parametrize("name,expected,note", expected_rows(),
                         ids=[r[0] for r in expected_rows()])
def test_perl_mail_dkim_corpus(name, expected, note, perl_dns, shared):
    raw = (PERL / "corpus" / name).read_bytes()
    results = verify(perl_dns, raw, **LEGACY)
    if "_dk_" in name or name.startswith("dk_"):
        # DomainKeys (RFC 4870, historic) is not DKIM: no DKIM result at all.
        assert results == [] or b"DKIM-Signature" in raw
        assert outcome(results) == "none"
        return
    if pre_standard(raw):
        # Drafts before RFC 4871 (no v=, or v=0.5): RFC 6376 3.5 requires v=1.
        assert all(r.result == "permerror" for r in results), [r.reason for r in results]
        return
    assert outcome(results) == expected, [r.reason for r in results]
    strict = verify(perl_dns, raw)
    if expected == "pass" and all(r.algorithm == "rsa-sha1" for r in results):
        assert outcome(strict) == "fail" and any(r.weak for r in strict)
    if expected != "pass":
        assert outcome(strict) != "pass"


def pre_standard(raw: bytes) -> bool:
    """pre_standard - every DKIM-Signature lacks v=1 (drafts before RFC 4871)."""
    from mailward.auth.dkim import signature_headers, signature_tags

    tags = [signature_tags(value) or {} for value in signature_headers(canonicalize(raw)[0])]
    return bool(tags) and all(t.get(b"v") != b"1" for t in tags)


def test_rfc8301_refuses_sha1_and_short_keys(perl_dns, shared):
    sha1 = verify(perl_dns, (PERL / "corpus/good_83176.txt").read_bytes())
    assert sha1[0].result == "fail" and "RFC 8301" in sha1[0].reason
    assert symbol_of(sha1[0]) == "DKIM_WEAK"
    short = verify(perl_dns, (PERL / "corpus/goodkey_1.txt").read_bytes(), accept_sha1=True)
    assert short[0].result == "fail" and "too short" in short[0].reason


def mail_auth_case(path: Path) -> tuple[dict, bytes]:
    """mail_auth_case - DNS lines, a blank line, then the message."""
    text = path.read_bytes().replace(b"\r\n", b"\n")
    head, _, message = text.partition(b"\n\n")
    zone: dict = {}
    for line in head.decode().splitlines():
        name, _, value = line.partition(" ")
        zone.setdefault(name.rstrip("."), {"TXT": []})["TXT"].append(value.strip())
    return zone, message.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("number", ["001", "002", "003", "004", "005", "006"])
def test_mail_auth_corpus_last_signature_passes(number, shared, monkeypatch):
    import time as time_module

    # Upstream verifies at a fixed time; expiry (x=) is judged at that moment.
    monkeypatch.setattr(time_module, "time", lambda: 1667843664)
    zone, raw = mail_auth_case(SHARED / f"corpus/dkim/mail-auth/{number}.txt")
    with DnsTestServer(zone) as server:
        results = verify(server, raw)
    assert results and results[-1].result == "pass", [r.reason for r in results]


def test_ed25519_rfc8463_example(shared):
    zone, raw = mail_auth_case(SHARED / "corpus/dkim/mail-auth/001.txt")
    with DnsTestServer(zone) as server:
        results = verify(server, raw)
    assert {r.algorithm for r in results if r.result == "pass"} >= {"ed25519-sha256",
                                                                  "rsa-sha256"}


def cases_dns(shared) -> dict:
    return json.loads((shared / "cases/C_dkim_dns.json").read_text())["dns"]


def test_l_tag_leaves_the_tail_unauthenticated_case_c15(shared):
    with DnsTestServer(cases_dns(shared)) as server:
        [result] = verify(server, (shared / "cases/C15_dkim_l_tag_appended.eml").read_bytes())
    assert result.result == "policy" and result.partial and not result.counts_for_dmarc
    assert symbol_of(result) == "DKIM_PARTIAL"


def test_an_extra_from_breaks_the_signature_case_c11(shared):
    with DnsTestServer(cases_dns(shared)) as server:
        [result] = verify(server, (shared / "cases/C11_multiple_from.eml").read_bytes())
    assert result.result == "fail"


def test_garbage_signatures_give_results_not_exceptions(dns_server):
    dns_server.set({"s._domainkey.example.org": {"TXT": ["v=DKIM1; k=rsa; p=notbase64!!"]},
                    "slow._domainkey.example.org": "TIMEOUT"})
    raw = (b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from; bh=AA==; b=AA==\r\n"
           b"DKIM-Signature: garbage without tags\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=slow; h=from; bh=AA==; b=A\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=ex\xffample.org; s=s; h=from; bh=; b=\r\n"
           b"From: a@example.org\r\nSubject: \xe9t\xe9\r\n\r\nbody\r\n")
    results = verify(dns_server, raw)
    assert [r.result for r in results][:3] == ["permerror", "permerror", "temperror"]
    assert results[3].result in ("permerror", "fail")


@pytest.mark.parametrize("raw", [
    b"", b"\n", b"\r\n", b"\r\n\r\nX: y\n", b"A: 1\n\nB: 2\n", b"A: 1\r\n\r\nB: 2\r\n",
    b"A: 1\n\r\nB: 2\n", b"A: 1\r\rB: 2\n\nC: 3", b" folded first\nA: 1\n\n",
    b"A: 1\nbad line\n\nB: 2", b"From x\nA: 1\n  more\n\nA: 2", b"A: 1\nB: 2",
])
def test_signature_headers_read_what_dkimpy_reads_of_the_whole_message(raw):
    import dkim

    from mailward.auth.dkim import signature_headers

    try:
        expected = [v for f, v in dkim.rfc822_parse(raw)[0] if f.lower() == b"a"]
    except Exception:
        expected = []
    assert signature_headers(raw, b"a") == expected


def test_signature_headers_on_corpus_mail(shared):
    import dkim

    from mailward.auth.dkim import header_fields, signature_headers

    folders = [shared / "corpus" / "spam" / "ham", shared / "corpus" / "phishing"]
    files = [p for folder in folders for p in sorted(folder.iterdir())[:150]]
    signed = 0
    names = (b"dkim-signature", b"arc-seal", b"received")
    for path in files:
        raw = path.read_bytes()
        together = header_fields(raw, names)
        for name in names:
            try:
                expected = [v for f, v in dkim.rfc822_parse(raw)[0] if f.lower() == name]
            except Exception:
                expected = []
            assert signature_headers(raw, name) == expected, path.name
            assert together[name] == expected, path.name
            signed += name == b"dkim-signature" and bool(expected)
    assert signed > 10
