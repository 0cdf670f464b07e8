"""DNSBL look-ups against a real DNS server on loopback."""

from __future__ import annotations

import time


from mailward.config import load_settings
from mailward.connection.dnsbl import DnsblCheck, reversed_name
from mailward.envelope import Envelope
from mailward.pipeline import Task
from mailward.services import Services


def test_reversed_names():
    assert reversed_name("192.0.2.10") == "10.2.0.192"
    assert reversed_name("::ffff:192.0.2.10") == "10.2.0.192"
    assert reversed_name("2001:db8::1") == ".".join(reversed("20010db8" + "0" * 23 + "1"))
    assert reversed_name("not an ip") is None


def make_check(tmp_path, dns_server, zones, required=1, timeout=2.0):
    settings = load_settings(overrides={
        "storage.data_dir": str(tmp_path), "dns.nameservers": [dns_server.address],
        "connection.dnsbl_zones": zones, "connection.dnsbl_required": required,
        "connection.dnsbl_timeout": timeout})
    services = Services.create(settings)
    return DnsblCheck.from_services(services), services


async def run(check, services, ip):
    task = Task(envelope=Envelope("q1", peer_ip=ip), services=services)
    return await check.check(task)


async def test_listed_by_enough_zones_is_a_reject(tmp_path, dns_server):
    dns_server.set({"10.2.0.192.bl.example": {"A": ["127.0.0.2"]},
                    "10.2.0.192.bl2.example": {"A": ["127.0.0.4"]}})
    check, services = make_check(tmp_path, dns_server, ["bl.example", "bl2.example", "bl3.example"],
                                 required=2)
    [finding] = await run(check, services, "192.0.2.10")
    assert finding.symbol == "DNSBL_REJECT" and finding.weight == 2.0
    assert "bl.example 127.0.0.2" in finding.detail and "bl2.example" in finding.detail
    assert ("10.2.0.192.bl3.example", "A") in dns_server.queries


async def test_listed_by_too_few_zones_only_scores(tmp_path, dns_server):
    dns_server.set({"10.2.0.192.bl.example": {"A": ["127.0.0.2"]}})
    check, services = make_check(tmp_path, dns_server, ["bl.example", "bl2.example"], required=2)
    [finding] = await run(check, services, "192.0.2.10")
    assert finding.symbol == "DNSBL_LISTED"


async def test_refusal_codes_and_unlisted_addresses_do_not_count(tmp_path, dns_server):
    dns_server.set({"11.2.0.192.bl.example": {"A": ["127.255.255.254"]}})
    check, services = make_check(tmp_path, dns_server, ["bl.example"])
    assert await run(check, services, "192.0.2.11") == []
    assert await run(check, services, "192.0.2.12") == []


async def test_a_dnsbl_that_does_not_answer_is_a_tempfail_within_the_timeout(tmp_path, dns_server):
    dns_server.set({"13.2.0.192.slow.example": "TIMEOUT"})
    check, services = make_check(tmp_path, dns_server, ["slow.example"], timeout=1.0)
    started = time.monotonic()
    [finding] = await run(check, services, "192.0.2.13")
    assert finding.symbol == "DNSBL_TEMPFAIL"
    assert time.monotonic() - started < 3


def connect_from(source: str, port: int) -> bytes:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        return sock.recv(1024)


def test_a_listed_client_is_refused_at_connect(gateway_factory, dns_server):
    # Loopback is not looked up by default; the test lifts that and connects
    # from 127.0.0.2, which the zone lists.
    dns_server.set({"2.0.0.127.bl.example": {"A": ["127.0.0.2"]}})
    gateway = gateway_factory(config={"dns": {"nameservers": [dns_server.address]},
                                      "connection": {"dnsbl_zones": ["bl.example"],
                                                     "dnsbl_skip": []}})
    greeting = connect_from("127.0.0.2", gateway.smtp_port)
    assert greeting.startswith(b"554 5.7.1") and b"bl.example" in greeting
    assert connect_from("127.0.0.3", gateway.smtp_port).startswith(b"220")
    gateway.wait_log("refused at connect")


def test_loopback_and_private_clients_are_not_looked_up(gateway_factory, dns_server):
    dns_server.set({"2.0.0.127.bl.example": {"A": ["127.0.0.2"]}})
    gateway = gateway_factory(config={"dns": {"nameservers": [dns_server.address]},
                                      "connection": {"dnsbl_zones": ["bl.example"]}})
    assert connect_from("127.0.0.2", gateway.smtp_port).startswith(b"220")
    assert not [q for q in dns_server.queries if q[0].endswith("bl.example")]


def test_allowlisted_network_skips_the_dnsbl(gateway_factory, dns_server):
    dns_server.set({"2.0.0.127.bl.example": {"A": ["127.0.0.2"]}})
    gateway = gateway_factory(config={"dns": {"nameservers": [dns_server.address]},
                                      "connection": {"dnsbl_zones": ["bl.example"],
                                                     "dnsbl_skip": [],
                                                     "allow": ["127.0.0.2/32"]}})
    assert connect_from("127.0.0.2", gateway.smtp_port).startswith(b"220")


def test_blocklisted_network_is_refused_at_connect(gateway_factory):
    gateway = gateway_factory(config={"connection": {"block": ["127.0.0.4/32", "2001:db8::/32"]}})
    assert connect_from("127.0.0.4", gateway.smtp_port).startswith(b"554 5.7.1")
    assert connect_from("127.0.0.5", gateway.smtp_port).startswith(b"220")
