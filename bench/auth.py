"""Sender-authentication figures: SPF evaluations and DKIM verifications per second
on one core with a warm DNS cache, and the share of each standard suite passed.

Run: .venv/bin/python bench/auth.py [--spf N] [--dkim N]
(needs the test extras: the DNS answers come from the test suite's real DNS
server on loopback, and the suites from ../shared/corpus.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from mailward.auth.arc import ArcSealer, ArcVerifier  # noqa: E402
from mailward.auth.dkim import DkimVerifier  # noqa: E402
from mailward.auth.dns import Resolver  # noqa: E402
from mailward.auth.spf import SpfEvaluator  # noqa: E402
from mailward.config import DnsSettings  # noqa: E402
from tests.auth import spfsuite  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402
from tests.support.gateway import SHARED  # noqa: E402

MESSAGE = (b"From: Dana Reyes <dana@example.com>\r\nTo: sam@example.net\r\n"
           b"Subject: quarterly numbers\r\nDate: Thu, 03 Dec 2026 09:00:00 +0000\r\n"
           b"Message-ID: <bench@example.com>\r\n\r\n" + b"The numbers are attached.\r\n" * 60)


def resolver(server: DnsTestServer, timeout: float = 2.0) -> Resolver:
    return Resolver(DnsSettings(nameservers=[server.address], timeout=timeout))


def keys() -> tuple[bytes, str, bytes, str]:
    """keys - an RSA-2048 and an Ed25519 key with their DKIM records."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    edkey = ed25519.Ed25519PrivateKey.generate()
    seed = edkey.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    edpublic = edkey.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return (pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode(),
            base64.b64encode(seed), "v=DKIM1; k=ed25519; p=" + base64.b64encode(edpublic).decode())


def rate(count: int, started_wall: float, started_cpu: float) -> tuple[float, float]:
    wall = time.perf_counter() - started_wall
    cpu = time.process_time() - started_cpu
    return count / wall, count / cpu if cpu else float("inf")


async def bench_spf(server: DnsTestServer, count: int) -> tuple[float, float]:
    """bench_spf - evaluations per second, every answer already in the cache."""
    evaluator = SpfEvaluator(resolver(server))
    clients = ["192.0.2.77", "198.51.100.12", "203.0.113.10", "203.0.113.99"]
    for ip in clients:
        await evaluator.check_mail_from(ip, "dana@example.com", "mail.example.com")
    started, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        await evaluator.check_mail_from(clients[index % 4], "dana@example.com",
                                        "mail.example.com")
    return rate(count, started, cpu)


async def bench_dkim(server: DnsTestServer, signed: bytes, count: int) -> tuple[float, float]:
    """bench_dkim - messages verified per second (each with the given signatures)."""
    verifier = DkimVerifier(resolver(server))
    first = await verifier.verify(signed)
    assert all(r.result == "pass" for r in first), [r.reason for r in first]
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await verifier.verify(signed)
    return rate(count, started, cpu)


def spf_suite() -> tuple[int, int]:
    path = SHARED / "corpus/spf/rfc7208-tests.yml"
    scenarios = spfsuite.load(path)
    passed = total = 0
    for scenario in scenarios:
        with DnsTestServer(spfsuite.zone(scenario.get("zonedata", {}))) as server:
            evaluator = SpfEvaluator(resolver(server, 1.0), receiver="mx.example.org")
            for test in scenario["tests"].values():
                total += 1
                outcome = asyncio.run(evaluator.check_mail_from(test["host"], test["mailfrom"],
                                                                test["helo"]))
                expected = test["result"] if isinstance(test["result"], list) \
                    else [test["result"]]
                passed += str(outcome.result) in expected
    return passed, total


def arc_suites() -> tuple[int, int, int, int]:
    def docs(name):
        with open(SHARED / "corpus/arc" / name, encoding="utf-8") as handle:
            return [d for d in yaml.safe_load_all(handle) if d]

    def crlf(text):
        return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()

    valid = valid_total = 0
    for doc in docs("arc-draft-validation-tests.yml"):
        zone = {n: {"TXT": [v]} for n, v in (doc.get("txt-records") or {}).items()}
        with DnsTestServer(zone) as server:
            verifier = ArcVerifier(resolver(server, 1.0))
            for test in doc["tests"].values():
                valid_total += 1
                result = asyncio.run(verifier.verify(crlf(test["message"])))
                expected = test["cv"].strip().lower()
                valid += (result.terminated and result.cv == "fail") if not expected \
                    else (result.cv == expected and not result.terminated)
    signed = signed_total = 0
    for doc in docs("arc-draft-sign-tests.yml"):
        for test in doc["tests"].values():
            signed_total += 1
            sealer = ArcSealer(doc["privatekey"].encode(), doc["sel"], doc["domain"],
                               test["srv-id"], mode="always", standardize=True,
                               headers=[h.strip() for h in test["sig-headers"].split(":")])
            raw = crlf(test["message"])
            added = sealer.seal(raw, timestamp=int(test["t"]))[:-len(raw) or None].decode()
            want = "".join((test["AS"] or "").split())
            if not want:
                signed += "ARC-Seal" not in added  # no set is expected for this message
            else:
                signed += want.split("b=")[1].split(";")[0] in "".join(added.split())
    return valid, valid_total, signed, signed_total


def dkim_corpus() -> tuple[int, int]:
    from tests.auth.test_dkim import LEGACY, outcome, perl_zone, pre_standard
    from mailward.mime import canonicalize

    base = SHARED / "corpus/dkim/perl-mail-dkim"
    with open(base / "expected-results.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))[1:]
    passed = total = 0
    with DnsTestServer(perl_zone()) as server:
        verifier = DkimVerifier(resolver(server, 1.0), **LEGACY)
        for name, expected, *_ in rows:
            raw = (base / "corpus" / name).read_bytes()
            results = asyncio.run(verifier.verify(canonicalize(raw)[0]))
            if name.startswith("dk_") or "_dk_" in name:
                continue  # DomainKeys (RFC 4870) is not DKIM
            if pre_standard(raw):
                continue  # drafts before RFC 4871: RFC 6376 makes them permerror
            total += 1
            passed += outcome(results) == expected
    return passed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spf", type=int, default=3000, help="SPF evaluations to time")
    parser.add_argument("--dkim", type=int, default=1000, help="DKIM verifications to time")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    pem, rsa_record, seed, ed_record = keys()
    zone = {
        "example.com": {"TXT": ["v=spf1 include:_spf.example.net a:mail.example.com mx "
                                "ip4:192.0.2.0/24 -all"], "MX": ["10 mx.example.com"]},
        "_spf.example.net": {"TXT": ["v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all"]},
        "mail.example.com": {"A": ["203.0.113.10"]}, "mx.example.com": {"A": ["203.0.113.20"]},
        "rsa._domainkey.example.com": {"TXT": [rsa_record]},
        "ed._domainkey.example.com": {"TXT": [ed_record]},
    }
    headers = [b"from", b"to", b"subject", b"date", b"message-id"]
    rsa_signed = dkim.sign(MESSAGE, b"rsa", b"example.com", pem, include_headers=headers) \
        + MESSAGE
    ed_signed = dkim.sign(MESSAGE, b"ed", b"example.com", seed, include_headers=headers,
                          signature_algorithm=b"ed25519-sha256") + MESSAGE
    with DnsTestServer(zone) as server:
        spf_wall, spf_cpu = asyncio.run(bench_spf(server, args.spf))
        rsa_wall, rsa_cpu = asyncio.run(bench_dkim(server, rsa_signed, args.dkim))
        ed_wall, ed_cpu = asyncio.run(bench_dkim(server, ed_signed, args.dkim))
    print(f"SPF evaluations/s (warm cache, one core): {spf_wall:,.0f} wall, "
          f"{spf_cpu:,.0f} per CPU-second")
    print(f"DKIM rsa-sha256 2048-bit verifications/s: {rsa_wall:,.0f} wall, "
          f"{rsa_cpu:,.0f} per CPU-second")
    print(f"DKIM ed25519-sha256 verifications/s: {ed_wall:,.0f} wall, "
          f"{ed_cpu:,.0f} per CPU-second")
    passed, total = spf_suite()
    print(f"RFC 7208 suite: {passed}/{total} ({100 * passed / total:.1f}%)")
    valid, valid_total, signed, signed_total = arc_suites()
    print(f"ARC validation suite: {valid}/{valid_total} ({100 * valid / valid_total:.1f}%)")
    print(f"ARC signing suite: {signed}/{signed_total} ({100 * signed / signed_total:.1f}%)")
    passed, total = dkim_corpus()
    print(f"DKIM corpus (Mail::DKIM table, RFC 4871 profile, DKIM-standard rows): "
          f"{passed}/{total} ({100 * passed / total:.1f}%)")


if __name__ == "__main__":
    main()
