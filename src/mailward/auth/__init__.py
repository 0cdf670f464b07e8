"""Sender authentication: DNS, SPF, DKIM, DMARC, ARC and Authentication-Results."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=64)
def _networks(networks: tuple[str, ...]) -> tuple[ipaddress._BaseNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def is_trusted_peer(networks: list[str], ip: str) -> bool:
    """is_trusted_peer - the client is an internal relay whose mail is not authenticated."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net
               for net in _networks(tuple(networks)))
