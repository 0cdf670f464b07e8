"""Rate limits per client IP and per network: token buckets and session counts.

Connections and messages are token buckets ("N per period": N tokens that
refill at N/period per second); simultaneous sessions are counts. Each has a
limit per client IP and per network (/24 for IPv4, /64 for IPv6), so a
sender cannot dodge a limit by spreading over a subnet. Buckets live in
memory, or in Redis when several gateway nodes must share them. Over a limit
the SMTP server answers 421 4.7.0 and closes: a temporary refusal that a
legitimate sender retries, never a silent drop. Trusted relays
(``auth.trusted_networks``) carry everybody's mail and are never limited;
the server's own ``smtp.max_sessions`` still bounds them.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from mailward.auth import is_trusted_peer
from mailward.config import RateLimitSettings, parse_rate

log = logging.getLogger("mailward.connection")

# Redis keeps the bucket state (tokens, time) in a hash; one round trip.
_REDIS_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1]) or capacity
local stamp = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - stamp) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return allowed
"""


def network_of(ip: str) -> str:
    """network_of - the /24 (IPv4) or /64 (IPv6) that contains ip."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class Buckets(Protocol):
    async def take(self, key: str, capacity: int, period: float) -> bool: ...


class MemoryBuckets:
    """Token buckets in this process, the least recently used forgotten first."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.max_keys = max_keys

    async def take(self, key: str, capacity: int, period: float) -> bool:
        now = time.monotonic()
        rate = capacity / period
        tokens, stamp = self._state.pop(key, (float(capacity), now))
        tokens = min(capacity, tokens + (now - stamp) * rate)
        allowed = tokens >= 1
        self._state[key] = (tokens - 1 if allowed else tokens, now)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)
        return allowed


class RedisBuckets:
    """Token buckets in Redis, shared by every gateway node."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.script = self.client.register_script(_REDIS_BUCKET)

    async def take(self, key: str, capacity: int, period: float) -> bool:
        try:
            allowed = await self.script(keys=[f"mailward:rl:{key}"],
                                        args=[capacity, capacity / period, time.time()])
        except Exception as error:  # a cache outage must not stop mail
            log.warning("rate limit store unreachable (%s); allowing", error)
            return True
        return bool(allowed)


@dataclass(frozen=True, slots=True)
class Refusal:
    what: str
    key: str

    @property
    def reply(self) -> str:
        return f"421 4.7.0 Too many {self.what} from {self.key}, try again later"


class RateLimiter:
    """The gateway's limits on connections, messages and sessions."""

    def __init__(self, settings: RateLimitSettings, buckets: Buckets | None = None,
                 exempt: list[str] | None = None) -> None:
        self.settings = settings
        self.exempt = list(exempt or [])
        if buckets is None:
            buckets = (RedisBuckets(settings.backend)
                       if settings.backend.startswith("redis") else MemoryBuckets())
        self.buckets = buckets
        self.rates = {name: parse_rate(getattr(settings, name)) for name in (
            "connections_per_ip", "connections_per_network",
            "messages_per_ip", "messages_per_network")}
        self.sessions: dict[str, int] = {}

    async def _take(self, name: str, key: str) -> bool:
        capacity, period = self.rates[name]
        if capacity == 0:
            return True
        return await self.buckets.take(f"{name}:{key}", capacity, period)

    def _exempt(self, ip: str) -> bool:
        return is_trusted_peer(self.exempt, ip)

    async def connection(self, ip: str) -> Refusal | None:
        """connection - take a connection token and a session slot, or refuse."""
        if self._exempt(ip):
            return None
        network = network_of(ip)
        if self.sessions.get(ip, 0) >= self.settings.sessions_per_ip:
            return Refusal("simultaneous sessions", ip)
        if self.sessions.get(network, 0) >= self.settings.sessions_per_network:
            return Refusal("simultaneous sessions", network)
        if not await self._take("connections_per_ip", ip):
            return Refusal("connections", ip)
        if not await self._take("connections_per_network", network):
            return Refusal("connections", network)
        for key in (ip, network):
            self.sessions[key] = self.sessions.get(key, 0) + 1
        return None

    def disconnected(self, ip: str) -> None:
        if self._exempt(ip):
            return
        for key in (ip, network_of(ip)):
            left = self.sessions.get(key, 0) - 1
            if left > 0:
                self.sessions[key] = left
            else:
                self.sessions.pop(key, None)

    async def message(self, ip: str) -> Refusal | None:
        """message - take a message token, or refuse."""
        if self._exempt(ip):
            return None
        if not await self._take("messages_per_ip", ip):
            return Refusal("messages", ip)
        network = network_of(ip)
        if not await self._take("messages_per_network", network):
            return Refusal("messages", network)
        return None
