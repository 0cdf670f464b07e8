"""A real DNS server on loopback (dnslib), serving a zone given as a dict.

Zone format (the same as the DNS cases in ../shared/cases): each name maps to
``{"A": [...], "AAAA": [...], "TXT": [...], "MX": ["10 host"], "PTR": [...],
"CNAME": [...], "NS": [...]}``, or to ``"NXDOMAIN"``, ``"SERVFAIL"`` or
``"TIMEOUT"`` (never answered). A TXT value may be a list of strings (one
record of several character-strings). Names not in the zone are NXDOMAIN.
A type may also map to ``"TIMEOUT"`` or ``"SERVFAIL"`` (only queries of that
type fail; ``"*"`` stands for every type not listed), and ``"WRONG": {"TXT": "A"}`` answers TXT queries with the A
records (a broken or hostile server). A CNAME is chased inside the zone, as
a recursive resolver would. Answers go over UDP and TCP; a UDP answer over
512 bytes is truncated so that the client retries over TCP, as real servers
do.
"""

from __future__ import annotations

import socket
from typing import Any

from dnslib import AAAA, CNAME, MX, NS, PTR, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


def _txt(value: Any) -> TXT:
    if isinstance(value, list):
        return TXT([v.encode() if isinstance(v, str) else v for v in value] or [b""])
    data = value.encode() if isinstance(value, str) else value
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return TXT(chunks)


class ZoneResolver(BaseResolver):
    def __init__(self, zone: dict[str, Any], ttl: int = 300) -> None:
        self.zone = {}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self.transports: list[tuple[str, str, str]] = []
        self.update(zone)

    def update(self, zone: dict[str, Any]) -> None:
        for name, records in zone.items():
            self.zone[name.lower().rstrip(".")] = records

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        # The labels as sent (str() of a dnslib name escapes spaces and the like).
        qname = ".".join(label.decode("latin-1") for label in request.q.qname.label).lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        self.transports.append((qname, qtype, getattr(handler, "protocol", "")))
        name = qname
        for _ in range(8):
            records = self.zone.get(name)
            if records is None or records == "NXDOMAIN":
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            if records == "SERVFAIL":
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            if records == "TIMEOUT":
                return None  # type: ignore[return-value]
            if "CNAME" in records and qtype != "CNAME":
                target = str(records["CNAME"][0]).rstrip(".").lower()
                owner = request.q.qname if name == qname else name
                reply.add_answer(RR(owner, QTYPE.CNAME, rdata=CNAME(target), ttl=self.ttl))
                name = target
                continue
            break
        else:
            return reply
        wanted = records.get(qtype, records.get("*", []))
        if wanted == "TIMEOUT":
            return None  # type: ignore[return-value]
        if wanted == "SERVFAIL":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        answer_type = records.get("WRONG", {}).get(qtype, qtype)
        for value in records.get(answer_type, []) if answer_type != qtype else wanted:
            owner = request.q.qname if name == qname else name
            reply.add_answer(RR(owner, getattr(QTYPE, answer_type),
                                rdata=_rdata(answer_type, value), ttl=self.ttl))
        return reply


def _rdata(qtype: str, value: Any) -> Any:
    """_rdata - one record's data from its zone-dict form."""
    if qtype == "MX":
        preference, _, host = str(value).partition(" ")
        return MX(host, int(preference))
    makers = {"A": A, "AAAA": AAAA, "TXT": _txt, "PTR": PTR, "CNAME": CNAME, "NS": NS}
    return makers[qtype](value)


class _Handler(DNSHandler):
    """Answers as a real server does: no reply for TIMEOUT, and UDP answers over
    512 bytes truncated to the header and question (RFC 1035 4.2.1, RFC 2181 9),
    so that clients retry over TCP."""

    udplen = 512

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        if reply is None:
            raise _NoReply()
        packed = reply.pack()
        if self.protocol == "udp" and len(packed) > self.udplen:
            truncated = request.reply()
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed

    def handle(self) -> None:
        try:
            super().handle()
        except _NoReply:
            pass


class _NoReply(Exception):
    """The zone says this query is never answered."""


class _Quiet(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_udp_tcp_port() -> int:
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port for DNS")


class DnsTestServer:
    """UDP and TCP DNS on 127.0.0.1:port, answering from a zone dict."""

    def __init__(self, zone: dict[str, Any] | None = None, port: int | None = None,
                 ttl: int = 300) -> None:
        self.port = port or free_udp_tcp_port()
        self.resolver = ZoneResolver(zone or {}, ttl)
        logger = _Quiet()
        self.udp = DNSServer(self.resolver, port=self.port, address="127.0.0.1", logger=logger,
                             handler=_Handler)
        self.tcp = DNSServer(self.resolver, port=self.port, address="127.0.0.1", tcp=True,
                             logger=logger, handler=_Handler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "DnsTestServer":
        self.udp.start_thread()
        self.tcp.start_thread()
        return self

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.server.shutdown()
            server.server.server_close()

    def __enter__(self) -> "DnsTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set(self, zone: dict[str, Any]) -> None:
        self.resolver.update(zone)

    def clear_queries(self) -> None:
        self.resolver.queries.clear()
        self.resolver.transports.clear()

    def replace(self, zone: dict[str, Any]) -> None:
        """replace - serve only this zone from now on."""
        self.resolver.zone = {}
        self.resolver.update(zone)

    @property
    def queries(self) -> list[tuple[str, str]]:
        return list(self.resolver.queries)
