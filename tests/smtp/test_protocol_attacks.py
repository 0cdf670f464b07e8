"""SMTP protocol faults from the field, replayed against a real `mailward serve`.

Each test is named after the attack it stops; the inputs are the cases in
../shared/cases, and each test covers the whole kind of fault, not only the
recorded bytes.
"""

from __future__ import annotations

import json
import socket
import ssl
import time

import pytest

from tests.support.gateway import SHARED


def load_case(name: str) -> dict:
    return json.loads((SHARED / "cases" / name).read_text())


class Wire:
    """A raw SMTP client: exact bytes out, reply lines in."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, list[bytes]]:
        """reply - one whole (possibly multi-line) reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), lines

    def pending(self, wait: float = 0.5) -> bytes:
        """pending - whatever else the server sends within wait seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            data = b""
        self.sock.settimeout(15)
        return self.buffer + data

    def starttls(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname="mx.test.example")
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()


def replay(port: int, steps: list[dict]) -> list[int]:
    """replay - run a case's steps; the reply codes seen (asserting each)."""
    wire = Wire(port)
    codes = []
    try:
        for step in steps:
            if "recv" in step:
                code, _ = wire.reply()
                assert str(code) == step["recv"]
                codes.append(code)
            elif step.get("tls_handshake"):
                wire.starttls()
            else:
                wire.send(step["send"].encode("latin-1"))
                try:
                    code, _ = wire.reply()
                except ConnectionError:
                    if step.get("optional"):
                        break
                    raise
                codes.append(code)
                if "expect" in step:
                    assert str(code) == step["expect"], step
                if "expect_one_of" in step:
                    assert str(code) in step["expect_one_of"], step
    finally:
        wire.close()
    return codes


def smuggling_payload(terminator: str) -> str:
    first = "From: dana.reyes@example.org\r\nTo: sam.okafor@example.com\r\nSubject: first\r\n\r\nhello"
    second = ("MAIL FROM:<ceo@example.com>\r\nRCPT TO:<sam.okafor@example.com>\r\nDATA\r\n"
              "From: ceo@example.com\r\nTo: sam.okafor@example.com\r\nSubject: smuggled\r\n\r\n"
              "Please wire the money today.\r\n.\r\n")
    return first + terminator + second


SMUGGLING_TERMINATORS = ["\n.\r\n", "\n.\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"]


@pytest.mark.parametrize("terminator", SMUGGLING_TERMINATORS)
@pytest.mark.parametrize("bare_lf", ["reject", "normalize"])
def test_smtp_smuggling_never_splits_one_data_into_two(gateway_factory, smtp_sink,
                                                       terminator, bare_lf):
    case = load_case("C01_smtp_smuggling_lf_dot_crlf.json")
    gateway = gateway_factory(relay=smtp_sink.url, config={"smtp": {"bare_lf": bare_lf}})
    wire = Wire(gateway.smtp_port)
    try:
        assert wire.reply()[0] == 220
        for command in ("EHLO client.example.org\r\n", "MAIL FROM:<dana.reyes@example.org>\r\n",
                        "RCPT TO:<sam.okafor@example.com>\r\n", "DATA\r\n"):
            wire.send(command.encode())
            wire.reply()
        wire.send(smuggling_payload(terminator).encode())
        code, lines = wire.reply()
        # Exactly one reply follows the payload.
        assert wire.pending() == b""
        assert str(code) in case["steps"][5]["expect_one_of"]
        if bare_lf == "reject":
            assert code == 550 and b"5.5.2" in lines[0]
        wire.send(b"QUIT\r\n")
        assert wire.reply()[0] == 221
    finally:
        wire.close()
    time.sleep(1.0)
    messages = smtp_sink.messages
    assert len(messages) <= case["assert"]["messages_queued_max"]
    for message in messages:
        assert b"Subject: smuggled" not in message.data.split(b"\r\n\r\n", 1)[0]
        assert b"MAIL FROM:<ceo@example.com>" in message.data
        # Bare LF is never forwarded downstream.
        assert b"\n" not in message.data.replace(b"\r\n", b"")
        assert b"\r" not in message.data.replace(b"\r\n", b"")


def test_smtp_smuggling_case_replay(gateway_factory, smtp_sink):
    case = load_case("C01_smtp_smuggling_lf_dot_crlf.json")
    gateway = gateway_factory(relay=smtp_sink.url)
    codes = replay(gateway.smtp_port, case["steps"])
    assert codes[-1] == 221
    time.sleep(1.0)
    assert not any(b"Subject: smuggled" in m.data for m in smtp_sink.messages)


def test_starttls_injection_is_discarded(gateway_factory):
    case = load_case("C02_smtp_starttls_injection.json")
    gateway = gateway_factory(config={"smtp": {"require_starttls": True}})
    replay(gateway.smtp_port, case["steps"])


def test_starttls_injection_gets_no_reply_for_injected_commands(gateway_factory):
    gateway = gateway_factory(config={"smtp": {"require_starttls": True}})
    wire = Wire(gateway.smtp_port)
    try:
        wire.reply()
        wire.send(b"EHLO client.example.org\r\n")
        assert wire.reply()[0] == 250
        wire.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<attacker@example.net>\r\n")
        assert wire.reply()[0] == 220
        assert wire.buffer == b""
        wire.starttls()
        wire.send(b"EHLO client.example.org\r\n")
        code, lines = wire.reply()
        assert code == 250 and any(b"PIPELINING" in line for line in lines)
        wire.send(b"RCPT TO:<sam.okafor@example.com>\r\n")
        assert wire.reply()[0] == 503
        wire.send(b"MAIL FROM:<dana@example.org>\r\n")
        assert wire.reply()[0] == 250
    finally:
        wire.close()


def test_bare_lf_in_the_header_block_is_refused(gateway_factory, smtp_sink):
    raw = (SHARED / "cases" / "C03_bare_lf_header_split.eml").read_bytes()
    gateway = gateway_factory(relay=smtp_sink.url)
    wire = Wire(gateway.smtp_port)
    try:
        wire.reply()
        for command in (b"EHLO client.example.org\r\n", b"MAIL FROM:<dana.reyes@example.org>\r\n",
                        b"RCPT TO:<sam.okafor@example.com>\r\n", b"DATA\r\n"):
            wire.send(command)
            wire.reply()
        wire.send(raw + b".\r\n")
        code, lines = wire.reply()
        assert code == 550 and b"5.5.2" in lines[0]
    finally:
        wire.close()
    assert smtp_sink.messages == []


def test_bare_lf_in_the_header_block_normalised_for_every_stage(gateway_factory, smtp_sink):
    raw = (SHARED / "cases" / "C03_bare_lf_header_split.eml").read_bytes()
    gateway = gateway_factory(relay=smtp_sink.url, config={"smtp": {"bare_lf": "normalize"}})
    wire = Wire(gateway.smtp_port)
    try:
        wire.reply()
        for command in (b"EHLO client.example.org\r\n", b"MAIL FROM:<dana.reyes@example.org>\r\n",
                        b"RCPT TO:<sam.okafor@example.com>\r\n", b"DATA\r\n"):
            wire.send(command)
            wire.reply()
        wire.send(raw + b".\r\n")
        assert wire.reply()[0] == 250
    finally:
        wire.close()
    [message] = smtp_sink.wait_for(1)
    assert b"\n" not in message.data.replace(b"\r\n", b"")
    assert b"Subject: quarterly report\r\nAuthentication-Results:" in message.data


def test_dot_stuffing_is_undone_exactly_once(gateway_factory, smtp_sink):
    case = load_case("C05_dot_stuffed_qp_url.json")
    # The spam model's opinion of this short message is not what is tested, and
    # the stored bytes are compared as they arrived, so links are not rewritten
    # (tests/urls/test_click.py follows the rewritten link of this case).
    gateway = gateway_factory(relay=smtp_sink.url,
                              config={"pipeline": {"disabled_checks": ["spam_model"]},
                                      "urls": {"rewrite": False}})
    replay(gateway.smtp_port, case["steps"])
    [message] = smtp_sink.wait_for(1)
    assert case["assert"]["stored_body_line"].encode() in message.data.split(b"\r\n")
    from mailward.message import Message

    urls = [u.url for u in Message(message.data).urls]
    assert urls == case["assert"]["extracted_urls"]
    for wrong in case["assert"]["must_not_extract"]:
        assert wrong not in urls


def test_dot_stuffed_lines_of_every_shape(gateway_factory, smtp_sink):
    gateway = gateway_factory(relay=smtp_sink.url,
                              config={"pipeline": {"disabled_checks": ["spam_model"]}})
    body = b"line\r\n.\r\n..\r\n...x\r\n.leading\r\nend"
    with gateway.smtp() as client:
        client.sendmail("a@example.org", ["user@example.com"],
                        b"From: a@example.org\r\nSubject: dots\r\n\r\n" + body + b"\r\n")
    [message] = smtp_sink.wait_for(1)
    assert message.data.endswith(b"\r\n\r\n" + body + b"\r\n")


def test_fake_close_delimiter_does_not_hide_a_part():
    from mailward.message import Message

    message = Message((SHARED / "cases" / "C06_mime_fake_close_boundary.eml").read_bytes())
    assert len(message.root.children) == 2
    [attachment] = message.attachments
    assert attachment.filename == "statement.html"
    assert "https://evil.example.net/login" in [u.url for u in message.urls]


def test_fake_close_delimiter_part_is_judged_end_to_end(gateway_factory, smtp_sink):
    raw = (SHARED / "cases" / "C06_mime_fake_close_boundary.eml").read_bytes()
    gateway = gateway_factory(relay=smtp_sink.url)
    gateway.cli("intel", "add", "--type", "domain", "evil.example.net")
    gateway.wait_log("intelligence loaded: 1 indicators")
    gateway.send(raw, mail_from="dana.reyes@example.org", rcpts=["sam.okafor@example.com"])
    text = gateway.wait_log("action=quarantine")
    assert "URL_DOMAIN_BLOCKLISTED" in text
    assert smtp_sink.messages == []


def test_outbound_relay_trust_is_bound_to_the_tenant(gateway_factory, smtp_sink, tmp_path):
    """EchoSpoofing: the connecting network alone never makes a trusted connector."""
    case = load_case("C18_echospoofing_relay.json")
    from tests.support.certs import make_ca_and_client

    ca, client_cert, client_key = make_ca_and_client(tmp_path, "connector.example.com")
    allowed = case["gateway_config"]["allowed_m365_tenant_ids"]
    gateway = gateway_factory(relay=smtp_sink.url, config={
        "smtp": {"accepted_domains": [case["gateway_config"]["customer_domain"]]},
        "outbound": {"enabled": True, "relay": smtp_sink.url,
                     "client_networks": ["127.0.0.0/8"],
                     "connector_cert_names": ["connector.example.com"],
                     "client_ca_file": str(ca), "allowed_m365_tenant_ids": allowed}})

    # The attack: right network, no connector certificate.
    replay(gateway.smtp_port, case["steps"])
    gateway.wait_log("not a trusted outbound connector")

    def session(headers: list[str], cert: bool) -> tuple[int, int]:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if cert:
            context.load_cert_chain(client_cert, client_key)
        import smtplib

        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as client:
            client.starttls(context=context)
            client.ehlo("mail-outbound.protection.outlook.example")
            client.mail("ceo@example.com")
            rcpt = client.rcpt("victim@example.net")[0]
            if rcpt != 250:
                return rcpt, 0
            body = "\r\n".join(headers + ["Subject: q", "", "hello", ""]).encode()
            return rcpt, client.data(body)[0]

    attacker = case["message_headers_if_data_reached"]
    # A connector certificate but another tenant's mail: refused at DATA.
    assert session(attacker, cert=True) == (250, 550)
    gateway.wait_log("M365 tenant not in allowed_m365_tenant_ids")
    # TLS without a client certificate: refused at RCPT.
    assert session(attacker, cert=False)[0] == 550
    # The control: the allowed tenant through its connector is relayed.
    control = [f"X-MS-Exchange-CrossTenant-Id: {allowed[0]}",
               'From: "Example Corp Billing" <ceo@example.com>']
    assert session(control, cert=True) == (250, 250)
    [relayed] = smtp_sink.wait_for(1)
    assert relayed.rcpt_tos == ["victim@example.net"]
    assert allowed[0].encode() in relayed.data
