"""Rate limits: token buckets in memory and in a real Redis, and 421 at the door.

Loopback is a trusted relay by default, and trusted relays have no limits;
the end-to-end tests of a limit make it untrusted.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time


from mailward.config import RateLimitSettings
from mailward.connection.ratelimit import MemoryBuckets, RateLimiter, RedisBuckets, network_of
from tests.conftest import need, port_open

UNTRUSTED_LOOPBACK = {"auth": {"trusted_networks": []}}


def test_networks():
    assert network_of("192.0.2.77") == "192.0.2.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of("::ffff:192.0.2.7") == "192.0.2.0/24"


async def test_memory_bucket_refills():
    buckets = MemoryBuckets()
    results = [await buckets.take("k", 3, 0.3) for _ in range(4)]
    assert results == [True, True, True, False]
    await asyncio.sleep(0.15)
    assert await buckets.take("k", 3, 0.3)


async def test_redis_bucket_is_shared_between_limiters():
    need(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    first, second = RedisBuckets("redis://127.0.0.1:6379/0"), RedisBuckets("redis://127.0.0.1:6379/0")
    key = f"test-{secrets.token_hex(4)}"
    results = [await (first if i % 2 else second).take(key, 4, 60) for i in range(5)]
    assert results == [True, True, True, True, False]
    await first.client.aclose()
    await second.client.aclose()


async def test_session_limits_per_ip_and_network():
    limiter = RateLimiter(RateLimitSettings(sessions_per_ip=2, sessions_per_network=3))
    assert await limiter.connection("192.0.2.1") is None
    assert await limiter.connection("192.0.2.1") is None
    refusal = await limiter.connection("192.0.2.1")
    assert refusal is not None and refusal.reply.startswith("421 4.7.0")
    assert await limiter.connection("192.0.2.2") is None
    assert (await limiter.connection("192.0.2.3")).key == "192.0.2.0/24"
    limiter.disconnected("192.0.2.1")
    assert await limiter.connection("192.0.2.9") is None


async def test_trusted_networks_are_not_limited():
    limiter = RateLimiter(RateLimitSettings(connections_per_ip="1/60s", messages_per_ip="1/60s",
                                            sessions_per_ip=1), exempt=["10.0.0.0/8"])
    for _ in range(3):
        assert await limiter.connection("10.1.2.3") is None
        assert await limiter.message("10.1.2.3") is None
    assert await limiter.connection("192.0.2.1") is None
    assert (await limiter.connection("192.0.2.1")).what == "simultaneous sessions"
    assert await limiter.message("192.0.2.1") is None
    assert (await limiter.message("192.0.2.1")).what == "messages"
    # The relay's sessions were never counted, so its leaving frees nothing.
    limiter.disconnected("10.1.2.3")
    assert limiter.sessions == {"192.0.2.1": 1, "192.0.2.0/24": 1}


def test_over_the_connection_rate_the_server_answers_421(gateway_factory):
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "ratelimit": {"connections_per_ip": "3/60s"}})
    greetings = []
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
            greetings.append(sock.recv(1024))
    assert [g[:3] for g in greetings] == [b"220", b"220", b"220", b"421"]
    assert b"4.7.0" in greetings[3]


def test_over_the_message_rate_mail_gets_421(gateway_factory):
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "ratelimit": {"messages_per_ip": "2/60s"}})
    with gateway.smtp() as client:
        codes = []
        for _ in range(3):
            codes.append(client.mail("a@example.org")[0])
            client.rset()
    assert codes == [250, 250, 421]


def test_a_trusted_relay_is_not_rate_limited(gateway_factory):
    gateway = gateway_factory(config={"ratelimit": {
        "connections_per_ip": "3/60s", "messages_per_ip": "2/60s", "sessions_per_ip": 2}})
    open_socks = [socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10)
                  for _ in range(6)]
    try:
        assert [s.recv(1024)[:3] for s in open_socks] == [b"220"] * 6
    finally:
        for sock in open_socks:
            sock.close()
    with gateway.smtp() as client:
        codes = []
        for _ in range(4):
            codes.append(client.mail("a@example.org")[0])
            client.rset()
    assert codes == [250] * 4


def test_concurrent_sessions_per_ip(gateway_factory):
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "ratelimit": {"sessions_per_ip": 2}})
    open_socks = [socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10)
                  for _ in range(3)]
    try:
        greetings = [s.recv(1024)[:3] for s in open_socks]
        assert greetings == [b"220", b"220", b"421"]
    finally:
        for sock in open_socks:
            sock.close()
    time.sleep(0.5)
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")


def test_redis_backed_limits_end_to_end(gateway_factory):
    need(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK, "ratelimit": {
        "backend": "redis://127.0.0.1:6379/0", "connections_per_ip": "2/60s",
        "connections_per_network": "1000/60s"}})
    import redis

    client = redis.Redis()
    for key in client.scan_iter("mailward:rl:connections_per_ip:127.0.0.1"):
        client.delete(key)
    codes = []
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
            codes.append(sock.recv(1024)[:3])
    assert codes == [b"220", b"220", b"421"]
    client.delete("mailward:rl:connections_per_ip:127.0.0.1")


def test_a_session_renamed_by_xclient_frees_the_proxys_slot(gateway_factory):
    gateway = gateway_factory(config={**UNTRUSTED_LOOPBACK,
                                      "smtp": {"xclient_networks": ["127.0.0.1/32"]},
                                      "ratelimit": {"sessions_per_ip": 2}})
    for _ in range(4):
        with gateway.smtp() as client:
            assert client.docmd("XCLIENT", "ADDR=192.0.2.7")[0] == 220
            client.quit()
        time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")
