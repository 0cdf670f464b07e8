"""Administrator allow and block lists of client networks (IPv4 and IPv6)."""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def in_networks(ip: str, networks: list) -> object | None:
    """in_networks - the first network that contains ip, or None."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    for network in networks:
        if address.version == network.version and address in network:
            return network
    return None


class ConnectionListsCheck:
    """Allow or refuse a client by the network it connects from."""

    name: ClassVar[str] = "connection_lists"
    stage: ClassVar[Stage] = Stage.CONNECT
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "CONN_ALLOWLISTED": "client network is on the administrator's allow list",
        "CONN_BLOCKLISTED": "client network is on the administrator's block list",
    }

    def __init__(self, allow: list[str], block: list[str]) -> None:
        self.allow = _networks(allow)
        self.block = _networks(block)

    @classmethod
    def from_services(cls, services: Services) -> "ConnectionListsCheck | None":
        settings = services.settings.connection
        if not settings.allow and not settings.block:
            return None
        return cls(settings.allow, settings.block)

    async def check(self, task: Task) -> list[Finding]:
        ip = task.envelope.peer_ip
        allowed = in_networks(ip, self.allow)
        if allowed is not None:
            return [Finding("CONN_ALLOWLISTED", Category.POLICY, f"{ip} is in {allowed}")]
        blocked = in_networks(ip, self.block)
        if blocked is not None:
            return [Finding("CONN_BLOCKLISTED", Category.POLICY, f"{ip} is in {blocked}")]
        return []
