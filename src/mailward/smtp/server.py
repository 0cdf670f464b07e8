"""The SMTP server: one protocol object per connection, on aiosmtpd.

The protocol is visible in the names: one ``handle_*`` hook per verb. The
session-stage checks run at CONNECT, HELO/EHLO, MAIL and RCPT; the whole
message is judged during DATA, so a rejection is a 5xx in the same session
and the sending server writes the bounce.

SECURITY:
- SMTP smuggling: DATA ends only at <CR><LF>.<CR><LF>. A bare LF or CR in
  DATA is refused with 550 5.5.2 (or normalised to CRLF, by configuration);
  one DATA never becomes two messages.
- STARTTLS injection: plaintext pipelined after STARTTLS is discarded
  (aiosmtpd clears its buffer on the handshake).
- Resources: message size (552 past it), recipients (452), command and DATA
  time-outs, error replies per session (421 and close), simultaneous
  sessions, and the rate limits of ``connection.ratelimit`` (which spare
  the trusted relays of ``auth.trusted_networks``).
- Open relay: a recipient outside the accepted domains is refused at RCPT
  (550 5.7.1) unless the session is a trusted outbound connector.
- Envelope addresses: a MAIL or RCPT path must be an RFC 5321 mailbox as the
  client wrote it (553 otherwise); aiosmtpd's RFC 5322 parser alone would
  turn <bad address> into a quoted local part.
- Unrecognised verbs are error replies like any other, under the same
  smtp.max_bad_commands (aiosmtpd's own smaller budget never runs).
- XCLIENT: only a proxy in ``smtp.xclient_networks`` (judged by the socket's
  own peer, never by an earlier XCLIENT) may give the real client's address
  and HELO name; the session then starts over, connection checks included.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import re
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session

from mailward.envelope import Envelope, new_queue_id
from mailward.gateway import Gateway
from mailward.pipeline import PipelineError, Stage, Task
from mailward.policy import Policy
from mailward.smtp.tls import peer_names, server_context
from mailward.verdict import Action

log = logging.getLogger("mailward.smtp")

_BARE_NEWLINE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_DATA_CHUNK_LIMIT = 64 * 1024
# aiosmtpd's own replies that lack an enhanced status code (RFC 3463).
_ENHANCED = {
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed maximum message size",
}


# aiosmtpd's reply to a MAIL or RCPT path its parser refuses; see _malformed.
_MALFORMED = "553 5.1.3 Error: malformed address"


class GatewaySMTP(SMTP):
    """aiosmtpd's protocol with mailward's DATA reader and session limits."""

    def __init__(self, handler: "GatewayHandler", **options: Any) -> None:
        super().__init__(handler, **options)
        self.handler = handler
        self.error_replies = 0
        # Connection state. aiosmtpd replaces the Session after STARTTLS (RFC
        # 3207 4.2), so what belongs to the connection lives here.
        self.session_id = new_queue_id()
        self.connect_findings: list = []
        self.counted = False
        # The address the rate limiter counted the session for: the socket's
        # peer, which an XCLIENT does not change.
        self.limited_ip = ""
        # Set by a hook that has logged the refusal it returns, with more
        # detail than push could; push then does not log it again.
        self.refusal_logged = False
        # The path of the last MAIL or RCPT as the client wrote it, before
        # aiosmtpd's RFC 5322 parser made it lenient (see _getaddr).
        self.path_text = ""
        self.path_keyword = ""
        # aiosmtpd closes the session with a 502 of its own after a few
        # unrecognised commands, whatever smtp.max_bad_commands says: they are
        # answered here instead, and push counts them with every other error.
        self._smtp_methods = _Verbs(self._smtp_methods, self._unrecognised)

    @property
    def client_ip(self) -> str:
        """client_ip - the client's address (after XCLIENT, the real one)."""
        peer = self.session.peer if self.session else None
        return str(peer[0]) if peer else "-"

    async def _handle_client(self) -> None:
        """_handle_client - refuse at connect before the greeting, if need be."""
        refusal = await self.handler.on_connect(self)
        if refusal:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        self.handler.on_disconnect(self)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        """push - send a reply; log refusals; too many error replies end the session."""
        text = status.decode() if isinstance(status, bytes) else str(status)
        if text in _ENHANCED:
            status = text = _ENHANCED[text]
        elif text == _MALFORMED:
            status = text = self._malformed()
        if text[:1] in ("4", "5"):
            if self.refusal_logged:
                self.refusal_logged = False
            else:
                log.info("%s: %s refused: %s", self.session_id, self.client_ip, text)
        if text[:1] in ("4", "5") and not text.startswith("421"):
            self.error_replies += 1
            if self.error_replies > self.handler.max_bad_commands:
                log.info("%s: %s: closing after %d error replies", self.session_id,
                         self.client_ip, self.error_replies)
                await super().push("421 4.7.0 Too many errors, closing connection")
                if self.transport is not None:
                    self.transport.close()
                return
        await super().push(status)

    async def _unrecognised(self, command: str, arg: str | None) -> None:
        """_unrecognised - a verb we do not know: 500, one error reply like any other."""
        await self.push(f'500 Error: command "{command}" not recognized')

    def _strip_command_keyword(self, keyword: str, arg: str) -> str | None:
        """_strip_command_keyword - note whose path follows: FROM: or TO:."""
        self.path_keyword = keyword
        return super()._strip_command_keyword(keyword, arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """_getaddr - keep the path as written; the hooks judge its syntax."""
        self.path_text = arg or ""
        return super()._getaddr(arg)

    def _malformed(self) -> str:
        """_malformed - aiosmtpd's reply to a path it cannot parse, saying why."""
        if self.path_keyword == "FROM:":
            problem = path_problem(self.path_text, sender=True) or "malformed"
            return f"553 5.1.7 Bad sender address syntax: {problem}"
        problem = path_problem(self.path_text, sender=False) or "malformed"
        return f"553 5.1.3 Bad recipient address syntax: {problem}"

    async def smtp_XCLIENT(self, arg: str) -> None:
        """smtp_XCLIENT - a trusted proxy names the real client (Postfix XCLIENT)."""
        if not self.handler.xclient_allowed(self):
            await self.push("550 5.7.0 Error: insufficient authorization")
            return
        if self.envelope is not None and self.envelope.mail_from:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        try:
            attributes = parse_xclient(arg)
        except ValueError as error:
            await self.push(f"501 5.5.4 Bad XCLIENT syntax: {error}")
            return
        address, port = attributes.get("ADDR"), attributes.get("PORT")
        peer = self.session.peer or ("", 0)
        self.session.peer = (address or peer[0], int(port) if port else peer[1])
        self.session.host_name = attributes.get("HELO") or None
        self.session.extended_smtp = False
        self._set_rset_state()
        refusal = await self.handler.on_xclient(self)
        if refusal:
            await self.push(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await self.push(f"220 {self.hostname} mailward ESMTP")

    async def smtp_DATA(self, arg: str) -> None:
        """smtp_DATA - read the message; only CRLF.CRLF ends it (RFC 5321 4.1.1.4)."""
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            async with asyncio.timeout(self.handler.data_timeout):
                data, problem = await self._read_data()
        except TimeoutError:
            log.info("%s: %s: DATA timed out", self.session_id, self.client_ip)
            await super().push("421 4.4.2 DATA timed out, closing connection")
            if self.transport is not None:
                self.transport.close()
            return
        if problem:
            self._set_post_data_state()
            await self.push(problem)
            return
        status = await self.handler.on_data(self, self.session, self.envelope, data)
        self._set_post_data_state()
        await self.push(status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """_read_data - the unstuffed message bytes, or a reason to refuse them."""
        chunks: list[bytes] = []
        size = 0
        limit = self.data_size_limit
        too_big = False
        line_start = True
        while True:
            try:
                chunk = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                chunk = await self._reader.read(overrun.consumed)
            except asyncio.IncompleteReadError as partial:
                raise ConnectionResetError("connection closed during DATA") from partial
            self._reset_timeout()
            if line_start and chunk == b".\r\n":
                break
            if line_start and chunk.startswith(b"."):
                chunk = chunk[1:]  # RFC 5321 4.5.2: remove exactly one stuffed dot
            line_start = chunk.endswith(b"\r\n")
            size += len(chunk)
            if limit and size > limit:
                too_big = True
                chunks.clear()
            if not too_big:
                chunks.append(chunk)
        if too_big:
            return b"", "552 5.3.4 Message exceeds the maximum size"
        data = b"".join(chunks)
        if _BARE_NEWLINE.search(data):
            if self.handler.bare_lf == "reject":
                return b"", "550 5.5.2 Message contains a bare LF or CR; use CRLF line ends"
            data = _BARE_NEWLINE.sub(b"\r\n", data)
        return data, None


class _Verbs(dict):
    """The verb table of a session: an unknown verb gets the fallback, not None.

    aiosmtpd looks a command up with ``get``; its own budget of unrecognised
    commands then never runs, and smtp.max_bad_commands is the only limit.
    """

    def __init__(self, methods: dict[str, Any], fallback: Any) -> None:
        super().__init__(methods)
        self.fallback = fallback

    def get(self, command: str, default: Any = None) -> Any:
        if command in self:
            return self[command]
        return functools.partial(self.fallback, command)


class GatewayHandler:
    """The hooks of every SMTP verb, answering for the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        from mailward.connection.ratelimit import RateLimiter

        self.gateway = gateway
        settings = gateway.settings
        self.settings = settings
        self.hostname = settings.hostname
        self.accepted = settings.smtp.accepted_domains
        self.max_recipients = settings.smtp.max_recipients
        self.max_bad_commands = settings.smtp.max_bad_commands
        self.data_timeout = settings.smtp.data_timeout
        self.bare_lf = settings.smtp.bare_lf
        self.limiter = RateLimiter(settings.ratelimit,
                                   exempt=list(settings.auth.trusted_networks))
        self.sessions = 0
        self.outbound = settings.outbound

    @property
    def pipeline(self):
        assert self.gateway.pipeline is not None
        return self.gateway.pipeline

    @property
    def policy(self) -> Policy:
        return self.pipeline.policy

    def _task(self, server: GatewaySMTP, envelope: SmtpEnvelope | None) -> Task:
        session = server.session
        peer = session.peer if session and session.peer else ("", 0)
        queue_id = getattr(envelope, "queue_id", None) or server.session_id
        ours = Envelope(queue_id=queue_id, peer_ip=str(peer[0]), peer_port=int(peer[1]),
                        helo=session.host_name or "",
                        mail_from=sender_of(envelope) if envelope else "",
                        rcpt_to=list(envelope.rcpt_tos) if envelope else [])
        return Task(envelope=ours, services=self.gateway.services,
                    findings=session_findings(server, envelope))

    async def _stage(self, server: GatewaySMTP, stage: Stage,
                     envelope: SmtpEnvelope | None = None) -> str | None:
        """_stage - run one session stage; a refusal reply, or None.

        Findings of CONNECT and HELO belong to the session; those of MAIL and
        RCPT to the transaction, and all of them reach the message's verdict.
        """
        task = self._task(server, envelope)
        try:
            found = await self.pipeline.run_stage(stage, task)
        except PipelineError as error:
            log.error("%s: %s checks failed: %s", task.envelope.queue_id, stage, error)
            server.refusal_logged = True
            return "451 4.3.0 Temporary local failure, try again later"
        if stage == Stage.CONNECT:
            server.connect_findings.extend(found)
        else:
            holder = envelope if envelope is not None else server.session
            holder.findings = list(getattr(holder, "findings", [])) + found
        if not found:
            return None
        verdict = self.policy.decide(found)
        if verdict.action == Action.REJECT:
            log.info("%s: refused at %s: %s (%s)", task.envelope.queue_id, stage,
                     verdict.reason, ",".join(f.symbol for f in found))
            server.refusal_logged = True
            detail = "; ".join(f.detail for f in verdict.findings if f.score > 0)[:300]
            return f"554 5.7.1 Refused: {detail or verdict.reason}"
        return None

    # CONNECT

    async def on_connect(self, server: GatewaySMTP) -> str | None:
        session = server.session
        ip = str(session.peer[0]) if session.peer else ""
        if self.sessions >= self.settings.smtp.max_sessions:
            return "421 4.3.2 Too many connections, try again later"
        refusal = await self.limiter.connection(ip)
        if refusal:
            log.info("%s: %s refused: %s", server.session_id, ip, refusal.reply)
            server.refusal_logged = True
            return refusal.reply
        server.counted = True
        server.limited_ip = ip
        self.sessions += 1
        log.info("%s: connect from %s", server.session_id, ip)
        return await self._stage(server, Stage.CONNECT)

    def on_disconnect(self, server: GatewaySMTP) -> None:
        if server.counted:
            server.counted = False
            self.sessions -= 1
            self.limiter.disconnected(server.limited_ip)

    def xclient_allowed(self, server: GatewaySMTP) -> bool:
        """xclient_allowed - the socket's own peer is a trusted proxy."""
        from mailward.auth import is_trusted_peer

        networks = self.settings.smtp.xclient_networks
        peer = server.transport.get_extra_info("peername") if server.transport else None
        return bool(networks and peer) and is_trusted_peer(list(networks), str(peer[0]))

    async def on_xclient(self, server: GatewaySMTP) -> str | None:
        """on_xclient - the connection checks again, for the client the proxy named."""
        session = server.session
        session.findings = []
        server.connect_findings = []
        log.info("%s: XCLIENT: client is %s (helo %s)", server.session_id,
                 session.peer[0], session.host_name or "-")
        return await self._stage(server, Stage.CONNECT)

    # HELO / EHLO

    async def handle_HELO(self, server: GatewaySMTP, session: Session,
                          envelope: SmtpEnvelope, hostname: str) -> str:
        session.host_name = hostname
        refusal = await self._stage(server, Stage.HELO)
        return refusal or f"250 {self.hostname}"

    async def handle_EHLO(self, server: GatewaySMTP, session: Session,
                          envelope: SmtpEnvelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        refusal = await self._stage(server, Stage.HELO)
        if refusal:
            return [refusal]
        responses = [r for r in responses if "HELP" not in r and "AUTH" not in r]
        extensions = [r[4:] for r in responses[1:]] + ["PIPELINING"]
        if self.xclient_allowed(server):
            extensions.insert(-1, "XCLIENT ADDR PORT HELO NAME")
        lines = [f"250-{self.hostname}"] + [f"250-{e}" for e in extensions[:-1]]
        return lines + [f"250 {extensions[-1]}"]

    # MAIL

    async def handle_MAIL(self, server: GatewaySMTP, session: Session,
                          envelope: SmtpEnvelope, address: str,
                          mail_options: list[str]) -> str:
        if _CONTROL.search(address):
            return "501 5.1.7 Bad sender address syntax (control character)"
        problem = path_problem(server.path_text, sender=True)
        if problem:
            return f"553 5.1.7 Bad sender address syntax: {problem}"
        ip = str(session.peer[0]) if session.peer else ""
        refusal = await self.limiter.message(ip)
        if refusal:
            return refusal.reply
        envelope.queue_id = new_queue_id()
        envelope.mail_from = address  # "<>" for the null sender; see sender_of
        envelope.mail_options.extend(mail_options)
        envelope.findings = []
        stage_refusal = await self._stage(server, Stage.MAIL, envelope)
        if stage_refusal:
            envelope.mail_from = None
            return stage_refusal.replace("554", "550", 1)
        return "250 2.1.0 Ok"

    # RCPT

    def _outbound_trusted(self, server: GatewaySMTP, session: Session) -> bool:
        """_outbound_trusted - a connector attributed by network and certificate."""
        if not self.outbound.enabled:
            return False
        from mailward.connection.lists import in_networks
        import ipaddress

        ip = str(session.peer[0]) if session.peer else ""
        networks = [ipaddress.ip_network(n) for n in self.outbound.client_networks]
        if in_networks(ip, networks) is None:
            return False
        names = peer_names(server.transport.get_extra_info("ssl_object")
                           if server.transport else None)
        wanted = {name.lower() for name in self.outbound.connector_cert_names}
        return bool(wanted & set(names))

    async def handle_RCPT(self, server: GatewaySMTP, session: Session,
                          envelope: SmtpEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        if _CONTROL.search(address):
            return "501 5.1.3 Bad recipient address syntax (control character)"
        problem = path_problem(server.path_text, sender=False)
        if problem:
            return f"553 5.1.3 Bad recipient address syntax: {problem}"
        domain = address.rpartition("@")[2].lower()
        if "@" not in address or not domain:
            return "550 5.1.3 Recipient address has no domain"
        if not self.gateway.is_local(address):
            if not self._outbound_trusted(server, session):
                log.info("%s: relaying to <%s> denied for %s: not an accepted domain and "
                         "not a trusted outbound connector (M365 tenant not attributed)",
                         envelope.queue_id, address, session.peer[0] if session.peer else "-")
                server.refusal_logged = True
                return "550 5.7.1 Relaying denied"
            envelope.outbound = True
        refusal = await self._stage(server, Stage.RCPT, envelope)
        if refusal:
            return refusal.replace("554", "550", 1)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    # DATA

    def _received(self, session: Session, envelope: SmtpEnvelope, queue_id: str,
                  tls: str) -> bytes:
        """_received - our trace header (RFC 5321 4.4)."""
        peer = session.peer[0] if session.peer else "unknown"
        protocol = ("UTF8" if envelope.smtp_utf8 else "") + \
            ("ESMTP" if session.extended_smtp else "SMTP") + ("S" if tls else "")
        helo = re.sub(r"[^\x21-\x7e]", "?", session.host_name or "unknown")[:255]
        recipient = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
        date = email.utils.format_datetime(email.utils.localtime())
        tls_note = f"\r\n\t(using {tls})" if tls else ""
        return (f"Received: from {helo} ([{peer}]){tls_note}\r\n\tby {self.hostname} "
                f"(mailward) with {protocol} id {queue_id}{recipient};\r\n\t{date}\r\n"
                ).encode("utf-8", "replace")

    def _tls(self, server: GatewaySMTP) -> tuple[str, list[str]]:
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        if ssl_object is None:
            return "", []
        version = ssl_object.version() or "TLS"
        cipher = (ssl_object.cipher() or ("",))[0]
        return f"{version} {cipher}".strip(), peer_names(ssl_object)

    async def on_data(self, server: GatewaySMTP, session: Session, envelope: SmtpEnvelope,
                      data: bytes) -> str:
        queue_id = getattr(envelope, "queue_id", None) or new_queue_id()
        tls, cert_names = self._tls(server)
        outbound = bool(getattr(envelope, "outbound", False))
        ours = Envelope(queue_id=queue_id, mail_from=sender_of(envelope),
                        rcpt_to=list(envelope.rcpt_tos),
                        peer_ip=str(session.peer[0]) if session.peer else "",
                        peer_port=int(session.peer[1]) if session.peer else 0,
                        helo=session.host_name or "", tls=tls, client_cert_names=cert_names,
                        smtputf8=bool(envelope.smtp_utf8), outbound=outbound)
        if outbound:
            refusal = self._check_tenant(data, queue_id)
            if refusal:
                server.refusal_logged = True
                return refusal
        raw = self._received(session, envelope, queue_id, tls) + data
        reply = await self.gateway.receive(ours, raw, session_findings(server, envelope))
        return str(reply)

    def _check_tenant(self, data: bytes, queue_id: str) -> str | None:
        """_check_tenant - outbound mail must come from an allowed M365 tenant."""
        allowed = {t.lower() for t in self.outbound.allowed_m365_tenant_ids}
        if not allowed:
            return None
        head = data[:data.find(b"\r\n\r\n")] if b"\r\n\r\n" in data else data
        found = re.findall(rb"(?im)^X-MS-Exchange-CrossTenant-Id:\s*([0-9a-f-]+)", head)
        tenants = {t.decode().lower() for t in found}
        if len(tenants) != 1 or not tenants <= allowed:
            log.warning("%s: outbound refused: M365 tenant not in allowed_m365_tenant_ids "
                        "(%s)", queue_id, ",".join(sorted(tenants)) or "none")
            return "550 5.7.1 Relaying denied: sending tenant is not allowed"
        return None


_XTEXT = re.compile(r"\+([0-9A-F]{2})")
# No address of RFC 5321 holds a control character; a NUL would reach the
# mailbox store's file names and every log line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# RFC 5321 4.1.2 paths, with the UTF-8 of RFC 6531 3.3 in local parts and
# domain labels. aiosmtpd reads a path with the RFC 5322 parser, which takes
# obsolete forms (spaces and comments between words) and quotes the result,
# so these are matched against the path as the client wrote it.
_UTF8 = r"\u0080-\ud7ff\ue000-\U0010ffff"  # no surrogates: not valid UTF-8
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-" + _UTF8 + "]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e' + _UTF8 + r']|\\[\x20-\x7e])*"'
# RFC 5321 has no "_" in a domain, but real hosts' names carry it and mail
# servers take it; refusing it would refuse their mail, not a forgery.
_LET_DIG = rf"[A-Za-z0-9_{_UTF8}]"
_LABEL = rf"{_LET_DIG}(?:[A-Za-z0-9_{_UTF8}\-]*{_LET_DIG})?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
# The domain is optional here: a recipient without one ("<postmaster>") is
# answered by handle_RCPT, a sender without one by path_problem.
_MAILBOX = rf"(?:{_DOT_STRING}|{_QUOTED})(?:@(?:{_DOMAIN}|{_LITERAL}))?"
_SOURCE_ROUTE = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"  # obsolete, accepted and ignored
# Angle brackets as RFC 5321 asks, or a bare mailbox as many clients send;
# then the end, or a space before the parameters.
_PATH = re.compile(rf"(?:<(?:{_SOURCE_ROUTE})?{_MAILBOX}>|{_MAILBOX})(?=[ \t]|$)")
_NULL_PATH = re.compile(r"<>(?=[ \t]|$)")


def path_problem(text: str, sender: bool) -> str | None:
    """path_problem - why a MAIL or RCPT path is not an RFC 5321 mailbox, or None.

    The null sender ``<>`` is a path for MAIL only (RFC 5321 4.5.5); a quoted
    local part (``"a b"@example.com``) is a mailbox like any other.
    """
    text = text.strip()
    if sender and _NULL_PATH.match(text):
        return None
    found = _PATH.match(text)
    if found is None:
        address = text[1:].partition(">")[0] if text.startswith("<") else text
        if address.partition("@")[0].count('"') == 0 and " " in address.strip():
            return 'space outside quotes (write "a b"@example.com)'
        return "not local-part@domain (RFC 5321 4.1.2)"
    if sender and "@" not in found.group(0).rpartition('"')[2]:
        return "no domain"
    return None


def parse_xclient(arg: str) -> dict[str, str]:
    """parse_xclient - NAME=value attributes, xtext-decoded (RFC 3461 4)."""
    import ipaddress

    attributes: dict[str, str] = {}
    for item in arg.split():
        name, equals, value = item.partition("=")
        name = name.upper()
        if not equals or name not in ("ADDR", "PORT", "HELO", "NAME", "PROTO", "LOGIN",
                                      "DESTADDR", "DESTPORT"):
            raise ValueError(f"unknown attribute {name}")
        value = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), value)
        if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
            continue
        attributes[name] = value
    if "ADDR" in attributes:
        text = attributes["ADDR"]
        text = text[5:] if text.upper().startswith("IPV6:") else text
        attributes["ADDR"] = str(ipaddress.ip_address(text))
    if "PORT" in attributes and not (attributes["PORT"].isdigit()
                                     and 0 < int(attributes["PORT"]) < 65536):
        raise ValueError("PORT is not a port number")
    if "HELO" in attributes and not re.fullmatch(r"[\x21-\x7e]{1,255}", attributes["HELO"]):
        raise ValueError("HELO is not a host name")
    return attributes


def sender_of(envelope: SmtpEnvelope) -> str:
    """sender_of - the envelope sender, "" for the null sender (aiosmtpd keeps "<>")."""
    address = envelope.mail_from or ""
    return "" if address == "<>" else address


def session_findings(server: GatewaySMTP, envelope: SmtpEnvelope | None) -> list:
    """session_findings - what CONNECT, HELO, MAIL and RCPT found so far."""
    found = list(server.connect_findings) + list(getattr(server.session, "findings", []))
    if envelope is not None:
        found += list(getattr(envelope, "findings", []))
    return found


async def start_smtp(gateway: Gateway, host: str, port: int) -> asyncio.AbstractServer:
    """start_smtp - listen for SMTP on host:port in the running event loop."""
    settings = gateway.settings
    context = server_context(settings.smtp.tls_cert, settings.smtp.tls_key,
                             settings.data_dir, settings.hostname,
                             settings.outbound.client_ca_file if settings.outbound.enabled else "")
    handler = GatewayHandler(gateway)
    loop = asyncio.get_running_loop()

    def factory() -> GatewaySMTP:
        return GatewaySMTP(handler, data_size_limit=settings.smtp.max_message_size,
                           enable_SMTPUTF8=settings.smtp.smtputf8, hostname=settings.hostname,
                           ident="mailward ESMTP", tls_context=context,
                           require_starttls=settings.smtp.require_starttls,
                           timeout=settings.smtp.command_timeout, loop=loop)

    server = await loop.create_server(factory, host, port, reuse_address=True)
    log.info("SMTP listening on %s:%d", host, port)
    return server
