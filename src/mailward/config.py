"""Typed settings from one TOML file, with every default embedded.

The whole schema lives here so that ``mailward config defaults`` can print
every key with its default and its one-line comment. A site file overrides
only the keys it names; an unknown key, a wrong type or an unsafe
combination is an error that names the key, and the server does not start.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
import socket
import tempfile
import tomllib
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
               "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
               "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
               "t": 1024**4, "tb": 1024**4, "tib": 1024**4}
_DURATION_UNITS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600,
                   "d": 86400, "w": 604800}


class ConfigError(Exception):
    """A configuration that cannot be used; the message says what to fix."""


# Bounds past which a number is a typo, not a setting: a count beyond a
# 32-bit integer, a size beyond 1 TiB, a duration beyond 100 years. Larger
# values would overflow SQLite columns, timers or socket calls later on.
MAX_COUNT = 2**31 - 1
MAX_SIZE = 1024**4
MAX_DURATION = 100 * 365 * 86400.0


def parse_size(value: Any) -> int:
    """parse_size - bytes from an int or a string such as ``25MiB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 25MiB")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size such as 25MiB or 1048576")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size > MAX_SIZE:
        raise ValueError(f"{str(value)[:40]} is too large (at most 1TiB)")
    return size


def parse_duration(value: Any) -> float:
    """parse_duration - seconds from a number or a string such as ``5d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60s or 5d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not match or match.group(2).lower() not in _DURATION_UNITS:
            raise ValueError(f"{value!r} is not a duration such as 60s, 15m or 5d")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"{str(value)[:40]} is too long (at most 100 years)")
    return seconds


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


def parse_hostport(value: str, default_port: int) -> tuple[str, int]:
    """parse_hostport - split ``host:port``, ``[v6]:port`` or a bare host."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def is_host_name(text: str) -> bool:
    """is_host_name - text is a DNS name (letters, digits, - and _ in dotted labels)."""
    return len(text) <= 253 and all(_HOST_LABEL.fullmatch(label)
                                    for label in text.lower().split("."))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _listen(value: Any, example_port: int) -> str:
    """_listen - an address to listen on, HOST:PORT or [IPv6]:PORT; the port is required.

    A bare host is refused rather than given a default port: the default
    listeners are on unprivileged ports, and a server that moved to port 25
    (or 8025) because the port was left out surprises whoever reads the file.
    """
    if not isinstance(value, str):
        raise ValueError("expected a string HOST:PORT, e.g. 0.0.0.0:25")
    text = value.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(f"{value!r} is not [ADDRESS]:PORT")
        port = port[1:]
        if not _is_ip(host) or ":" not in host:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address")
    elif text.count(":") > 1:
        raise ValueError(f"{value!r} has no port; write an IPv6 address in brackets "
                         f"with its port, e.g. [{text}]:{example_port}")
    else:
        host, _, port = text.partition(":")
        if not host:
            raise ValueError(f"{value!r} has no host; write 0.0.0.0{text} for every "
                             f"IPv4 address or [::]{text} for every IPv6 address")
        if not (_is_ip(host) or is_host_name(host)):
            raise ValueError(f"{value!r}: {host!r} is not an IP address or host name")
    if not port:
        shown = f"[{host}]" if ":" in host else host
        raise ValueError(f"{value!r} has no port; write HOST:PORT, e.g. "
                         f"{shown}:{example_port} (no port is assumed)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: {port!r} is not a port (1-65535)")
    return value


SmtpListen = Annotated[str, BeforeValidator(lambda value: _listen(value, 25))]
WebListen = Annotated[str, BeforeValidator(lambda value: _listen(value, 8025))]


def _nameserver(value: Any) -> str:
    """_nameserver - a resolver as IP or IP:PORT ([IPv6]:PORT); a name cannot be asked."""
    text = str(value).strip()
    try:
        host, _ = parse_hostport(text, 53)
    except ValueError:
        host = ""
    if not _is_ip(host):
        raise ValueError(f"{value!r} is not IP, IP:PORT or [IPv6]:PORT (a resolver is "
                         "named by its address)")
    return text


Nameserver = Annotated[str, BeforeValidator(_nameserver)]


def _network(value: Any) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None


Network = Annotated[str, BeforeValidator(_network)]


def _domain(value: Any) -> str:
    text = str(value).strip().lower().rstrip(".")
    if "*" in text:
        raise ValueError(f"{value!r}: wildcards are not understood here; write the "
                         "domain itself, e.g. example.com")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", text) or not is_host_name(text):
        raise ValueError(f"{value!r} is not a domain name")
    return text


Domain = Annotated[str, BeforeValidator(_domain)]


def _domain_rule(value: Any) -> str:
    """_domain_rule - a domain (that domain only) or ``*.domain`` (every name under it)."""
    text = str(value).strip().lower().rstrip(".")
    if text.startswith("*.") and "*" not in text[2:]:
        try:
            return "*." + _domain(text[2:])
        except ValueError:
            raise ValueError(f"{value!r} is not *. and a domain name") from None
    if "*" in text:
        raise ValueError(f"{value!r}: a wildcard is understood only as a whole first "
                         "label, e.g. *.example.com")
    return _domain(text)


DomainRule = Annotated[str, BeforeValidator(_domain_rule)]


def _host_name(value: Any) -> str:
    """_host_name - empty, or a DNS name to say in protocol lines (greeting, EHLO).

    Anything else (a space, CR or LF, punctuation) would be written into
    replies and headers as it is, where it could end a line early.
    """
    if not isinstance(value, str):
        raise ValueError("expected a string such as mx.example.com")
    text = value.rstrip(".") if value.endswith(".") and not value.endswith("..") else value
    if text and not is_host_name(text):
        raise ValueError(f"{_shown(value)} is not a host name (letters, digits, - and _ "
                         "in dot-separated labels, e.g. mx.example.com)")
    return text


HostName = Annotated[str, BeforeValidator(_host_name)]


# One word of printable ASCII without the header specials (an RFC 5322 atom, with
# dots): what a header may hold unquoted.
_WORD = re.compile(r"[!#-'*+\-./0-9=?A-Z^-~]+")


def _token(value: Any) -> str:
    """_token - empty, or one word of printable ASCII with no header specials."""
    if not isinstance(value, str):
        raise ValueError("expected a string such as mx.example.com")
    if value and not _WORD.fullmatch(value):
        raise ValueError(f"{_shown(value)} is not one word of letters, digits and "
                         "dots (no spaces, quotes, brackets or line breaks), e.g. "
                         "mx.example.com")
    return value


Token = Annotated[str, BeforeValidator(_token)]


def _from_address(value: Any) -> str:
    """_from_address - empty, or user@domain to write into a From header."""
    if not isinstance(value, str):
        raise ValueError("expected a string such as postmaster@example.com")
    if not value:
        return value
    local, at, domain = value.rpartition("@")
    if (not at or not local or not _WORD.fullmatch(local)
            or not is_host_name(domain)):
        raise ValueError(f"{_shown(value)} is not an address such as "
                         "postmaster@example.com")
    return value


FromAddress = Annotated[str, BeforeValidator(_from_address)]


def _shown(value: str) -> str:
    """_shown - a value for an error message: quoted, cut short, line breaks visible."""
    return repr(value[:60])


def _internal_host(value: Any) -> str:
    """_internal_host - a host name, a domain (a leading dot allowed) or an IP address.

    Every name also covers the hosts under it (``content.features.internal_hops``),
    so ``.example.com`` and ``example.com`` are the same rule and no wildcard
    is needed; an empty name or a pattern would match nothing, silently.
    """
    if not isinstance(value, str):
        raise ValueError("expected a host name, domain or IP address")
    text = value.strip().lower().removeprefix(".").rstrip(".")
    if _is_ip(text):
        return str(ipaddress.ip_address(text))
    if not text or not is_host_name(text):
        raise ValueError(f"{value!r} is not a host name, domain or IP address (no "
                         "wildcards: example.com also covers every host under it)")
    return text


InternalHost = Annotated[str, BeforeValidator(_internal_host)]


def _sender_rule(value: Any) -> str:
    """_sender_rule - ``user@domain`` or ``@domain``; a bare domain would match nobody."""
    text = str(value).strip()
    local, at, domain = text.rpartition("@")
    if not at:
        hint = f"; write @{text} for the whole domain" if text else ""
        raise ValueError(f"{value!r} is neither an address nor @domain{hint}")
    if "*" in text:
        raise ValueError(f"{value!r}: wildcards are not understood here; write an "
                         "address, or @domain for one whole domain")
    if any(c.isspace() for c in text) or "@" in local or not is_host_name(domain):
        raise ValueError(f"{value!r} is neither an address nor @domain")
    return text


SenderRule = Annotated[str, BeforeValidator(_sender_rule)]


def _http_url(value: Any) -> str:
    """_http_url - empty, or an http(s) URL with a host."""
    if not isinstance(value, str):
        raise ValueError("expected a string such as https://host/")
    if value and not re.match(r"(?i)https?://[^/?#\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL such as https://host/")
    return value


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def _task_queue(value: Any) -> str:
    """_task_queue - empty (SQLite in data_dir) or a Redis URL."""
    if not isinstance(value, str):
        raise ValueError("expected a string: empty, or redis://host:port/db")
    if value and not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{value!r} is neither empty (SQLite in data_dir) nor "
                         "redis://host:port/db (rediss:// or unix:// also work)")
    return value


TaskQueue = Annotated[str, BeforeValidator(_task_queue)]


def _rate_backend(value: Any) -> str:
    """_rate_backend - memory, or a Redis URL shared by several nodes."""
    if value != "memory" and not re.match(r"(redis|rediss|unix)://.", str(value)):
        raise ValueError(f"{value!r} is neither memory nor redis://host:port/db")
    return value


RateBackend = Annotated[str, BeforeValidator(_rate_backend)]

# Database URL schemes mailward has drivers for (see Settings.database_url).
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "sqlite",
                    "sqlite+aiosqlite")


def _database_url(value: Any) -> str:
    """_database_url - empty, or a PostgreSQL or SQLite URL; the password is never echoed."""
    if not isinstance(value, str):
        raise ValueError("expected a string such as postgresql://user@host/db")
    if not value:
        return value
    supported = ("use postgresql://user@host/db or sqlite:///path/to/file.db, or leave "
                 "it empty for SQLite in data_dir")
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError(f"is not a database URL; {supported}")
    if scheme.lower() not in DATABASE_SCHEMES:
        raise ValueError(f"the scheme {scheme[:40]!r} is not supported (supported: "
                         f"{', '.join(DATABASE_SCHEMES)}); {supported}")
    if scheme.lower().startswith("sqlite") and (not rest.startswith("/") or rest in (
            "/", "/:memory:")):
        raise ValueError("SQLite needs a file: sqlite:///path/to/file.db (an "
                         "in-memory database is not shared with the command line)")
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(value)
    except Exception:
        raise ValueError(f"is not a valid {scheme.lower()} URL; {supported}") from None
    if scheme.lower().startswith("postgres") and not parsed.database:
        # Without one the server picks the user's default database, where
        # mailward would make its tables among whatever else lives there.
        raise ValueError("names no database; write postgresql://user@host/DATABASE")
    return scheme.lower() + "://" + rest


DatabaseUrl = Annotated[str, BeforeValidator(_database_url)]


def _syslog_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string such as udp://host:514")
    if value:
        parts = re.fullmatch(r"(udp|tcp)://([^/:]+|\[[0-9a-fA-F:.]+\]):(\d+)/?", value)
        if not parts or not 0 < int(parts.group(3)) < 65536:
            raise ValueError(f"{value!r} is not udp://host:port or tcp://host:port")
    return value


SyslogUrl = Annotated[str, BeforeValidator(_syslog_url)]


def _relay_url(value: Any) -> str:
    """_relay_url - a downstream SMTP URL, refused here rather than at serve."""
    if not isinstance(value, str):
        raise ValueError("expected a string such as smtp://host:port")
    if value:
        from mailward.smtp.relay import RelayTarget

        RelayTarget.parse(value)
    return value


RelayUrl = Annotated[str, BeforeValidator(_relay_url)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, not silently ignored.

    Types are strict, as TOML has them: ``true`` is no integer, ``"yes"`` no
    boolean and ``"5"`` no number (an integer still counts for a float).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _sensible_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) > MAX_COUNT and not _is_size(
                cls, info.field_name):
            raise ValueError(f"{value} is too large (at most {MAX_COUNT})")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value


def _is_size(section: type[BaseModel], name: str | None) -> bool:
    field = section.model_fields.get(name or "")
    return field is not None and any(getattr(m, "func", None) is parse_size
                                     for m in field.metadata)


class SmtpSettings(Section):
    listen: SmtpListen = Field("127.0.0.1:2525", description="address and port the SMTP server listens on, HOST:PORT or [IPv6]:PORT (the port is required)")
    hostname: HostName = Field("", description="name in the banner, EHLO and Received (empty = this host's FQDN)")
    accepted_domains: list[DomainRule] = Field(default_factory=list, description="recipient domains we accept mail for: example.com is that domain only, *.example.com any domain under it (empty = any, allowed only on loopback)")
    max_message_size: Size = Field("25MiB", ge=1024, description="largest message accepted (SIZE); larger gets 552")
    max_recipients: int = Field(100, ge=1, description="recipients per message; more get 452")
    command_timeout: Duration = Field("300s", description="idle time allowed between client commands")
    data_timeout: Duration = Field("600s", description="time allowed to send the whole DATA section")
    max_bad_commands: int = Field(10, ge=1, description="error replies in one session before it is closed with 421")
    max_sessions: int = Field(500, ge=1, description="simultaneous SMTP sessions across all clients")
    require_starttls: bool = Field(False, description="refuse MAIL before STARTTLS (530); off for a public MX")
    tls_cert: str = Field("", description="PEM certificate for STARTTLS (empty = self-signed one in the data directory)")
    tls_key: str = Field("", description="PEM private key for tls_cert")
    bare_lf: Literal["reject", "normalize"] = Field("reject", description="a bare LF or CR in DATA: reject with 550 5.5.2, or normalise it to CRLF")
    smtputf8: bool = Field(True, description="offer SMTPUTF8 (RFC 6531)")
    xclient_networks: list[Network] = Field(default_factory=list, description="networks of trusted proxies that may give the real client with XCLIENT (ADDR, PORT, HELO, NAME)")


class WebSettings(Section):
    listen: WebListen = Field("127.0.0.1:8025", description="address and port of the HTTP API, console and click service, HOST:PORT or [IPv6]:PORT (the port is required)")
    public_url: HttpUrl = Field("", description="base URL users reach the web service at (empty = http://<listen>)")
    session_lifetime: Duration = Field("12h", description="how long a console login lasts")
    cookie_secure: Literal["auto", "always", "never"] = Field("auto", description="mark session cookies Secure: always, never, or auto (unless served over plain HTTP on loopback)")
    login_max_failures: int = Field(5, ge=1, description="failed logins for one user from one client IP within login_window before that IP's further attempts for that user get 429 (the user can still log in from elsewhere)")
    login_max_failures_per_ip: int = Field(30, ge=1, description="failed logins from one client IP, for any users, within login_window before further attempts from that IP get 429")
    login_max_failures_per_user: int = Field(50, ge=1, description="failed logins for one user from all client IPs within login_window before every further attempt for that user gets 429 (guessing spread over many addresses); at least login_max_failures")
    login_window: Duration = Field("15m", description="window over which failed logins are counted")
    secret_file: str = Field("", description="file holding the key that signs digest links (empty = web.key in the data directory; share it between nodes)")
    trusted_proxies: list[Network] = Field(default_factory=list, description="addresses or CIDR networks of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (empty = none: the client address is the connecting peer, for login throttling and the audit log)")
    metrics_public: bool = Field(False, description="serve /metrics without a token (only for a scraper on a trusted network)")
    digest_interval: Duration = Field("5m", description="how often users' quarantine digests are checked for being due")
    digest_from: FromAddress = Field("", description="From address of quarantine digests (empty = quarantine@<hostname>)")
    digest_link_lifetime: Duration = Field("72h", description="how long the one-click links in a digest work")
    digest_max_items: int = Field(50, ge=1, description="items listed in one digest; more are summarised with a link to the console")
    user_release: list[Literal["spam", "phish", "impostor", "policy", "auth"]] = Field(default_factory=lambda: ["spam", "policy", "auth"], description="categories of held mail end users may release themselves (console and digest links); the others they can only ask staff to release. Malware is always staff-only")

    @model_validator(mode="after")
    def _login_limits(self) -> "WebSettings":
        if self.login_max_failures_per_user < self.login_max_failures:
            raise ValueError(
                f"login_max_failures_per_user: {self.login_max_failures_per_user} is below "
                f"login_max_failures ({self.login_max_failures}); the limit across all "
                "client IPs must be at least the limit for one IP")
        return self


class StorageSettings(Section):
    data_dir: str = Field("./mailward-data", description="directory for the database, spool, quarantine and mailboxes")
    database_url: DatabaseUrl = Field("", description="database URL: postgresql://user@host/db or sqlite:///path/to/file.db (empty = SQLite in data_dir)")

    @field_validator("data_dir")
    @classmethod
    def _data_dir_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; name a directory, e.g. /var/lib/mailward "
                             "(the current directory is never assumed)")
        if "\0" in value:
            raise ValueError("contains a NUL character; name a directory")
        return value


class DeliverySettings(Section):
    relay: RelayUrl = Field("", description="downstream server, smtp://host:port, smtp+starttls://host:port or smtps://host:port (empty = built-in mailbox store)")
    relay_timeout: Duration = Field("60s", description="time allowed for one delivery attempt to the relay")
    concurrency: int = Field(8, ge=1, description="deliveries in progress at once")
    retry_first: Duration = Field("60s", description="delay before the first retry after a temporary failure")
    retry_max: Duration = Field("1h", description="longest delay between retries (the delay doubles up to this)")
    max_age: Duration = Field("5d", description="give up and bounce after a message has waited this long")
    bounce_relay: RelayUrl = Field("", description="where bounces go (empty = the relay; with the mailbox store, local senders only)")
    bounce_from: FromAddress = Field("", description="From address of bounces (empty = MAILER-DAEMON@hostname)")


class PipelineSettings(Section):
    deadline: Duration = Field("60s", description="time allowed to judge one message; past it the sender gets 451 4.3.0")
    concurrency: int = Field(16, ge=1, description="messages judged at once")
    max_mime_depth: int = Field(30, ge=1, description="MIME nesting followed; deeper parts are a finding, not parsed")
    max_mime_parts: int = Field(2000, ge=1, description="MIME parts followed in one message")
    max_text_bytes: Size = Field("512KiB", description="text of a message fed to classifiers (a longer text is cut, and that is recorded)")
    disabled_checks: list[str] = Field(default_factory=list, description="names of checks that do not run")


class PolicySettings(Section):
    scores_file: str = Field("", description="TOML file of symbol scores and action thresholds (empty = the shipped one)")
    tag_external: bool = Field(False, description="add the external-sender banner to all mail from outside accepted_domains")
    allow_senders: list[SenderRule] = Field(default_factory=list, description="sender addresses or @domains always delivered when the From is authenticated (DMARC pass) or from auth.trusted_networks (malware still stopped); a bare domain is refused")
    block_senders: list[SenderRule] = Field(default_factory=list, description="sender addresses or @domains always rejected")


class BannerSettings(Section):
    external: str = Field("CAUTION: This message came from outside your organisation. Do not click links or open attachments unless you recognise the sender.", description="banner text for mail from an external sender")
    suspicious: str = Field("WARNING: mailward found this message suspicious ({reasons}). Be careful with links, attachments and requests for money or credentials.", description="banner text for suspicious mail; {reasons} names the findings")


class ConnectionSettings(Section):
    allow: list[Network] = Field(default_factory=list, description="client networks (CIDR) never refused at connect")
    block: list[Network] = Field(default_factory=list, description="client networks (CIDR) refused at connect with 554")
    reputation: bool = Field(True, description="learn each client IP's reputation from the verdicts on its mail")
    reputation_min_messages: int = Field(10, ge=1, description="messages seen from an IP before its reputation counts")
    reputation_reject_ratio: float = Field(0.9, gt=0, le=1, description="share of bad mail from an IP above which it is refused at connect")
    reputation_window: Duration = Field("3d", gt=0, description="an IP's counts are forgotten once none of its mail has been judged for this long, so a refusal lifts (auth.trusted_networks are never scored or refused)")
    dnsbl_zones: list[Domain] = Field(default_factory=list, description="DNS blocklist zones queried for each client IP")
    dnsbl_required: int = Field(1, ge=1, description="how many DNSBL zones must list an IP before it is refused")
    dnsbl_timeout: Duration = Field("2s", description="time allowed for the DNSBL look-ups of one connection")
    dnsbl_skip: list[Network] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"], description="client networks never looked up in DNSBLs (loopback and private by default)")


class RateLimitSettings(Section):
    backend: RateBackend = Field("memory", description="where counters live: memory, or redis://host:port/db to share them between nodes")
    connections_per_ip: str = Field("60/60s", description="new connections per client IP (N/period); auth.trusted_networks have no rate limits")
    connections_per_network: str = Field("300/60s", description="new connections per /24 (IPv4) or /64 (IPv6)")
    messages_per_ip: str = Field("120/60s", description="messages per client IP (N/period)")
    messages_per_network: str = Field("600/60s", description="messages per /24 or /64 network")
    sessions_per_ip: int = Field(20, ge=1, description="simultaneous sessions per client IP")
    sessions_per_network: int = Field(50, ge=1, description="simultaneous sessions per /24 or /64 network")

    @model_validator(mode="after")
    def _rates(self) -> "RateLimitSettings":
        for name in ("connections_per_ip", "connections_per_network",
                     "messages_per_ip", "messages_per_network"):
            try:
                parse_rate(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return self


class DnsSettings(Section):
    nameservers: list[Nameserver] = Field(default_factory=list, description="resolvers as IP or IP:PORT, [IPv6]:PORT (empty = /etc/resolv.conf)")
    timeout: Duration = Field("3s", description="time allowed for one DNS query, retries included")
    zone_file: str = Field("", description="answer from this RFC 1035 master file instead of the network")
    cache_size: int = Field(100_000, ge=0, description="answers kept in the TTL-respecting cache")


_ACTIONS = Literal["deliver", "tag", "quarantine", "reject"]


class AuthSettings(Section):
    authserv_id: Token = Field("", description="authserv-id of our Authentication-Results (empty = the host name); incoming ones claiming it are removed")
    trusted_networks: list[Network] = Field(["127.0.0.0/8", "::1/128"], description="client networks (internal relays; loopback by default) whose mail is not SPF, DKIM, DMARC or ARC checked, and that IP reputation and rate limits never score or refuse")


class SpfSettings(Section):
    enabled: bool = Field(True, description="check SPF (RFC 7208) of MAIL FROM at the MAIL command")
    helo: bool = Field(True, description="also check the HELO identity")
    timeout: Duration = Field("20s", description="time allowed for one whole SPF evaluation")
    max_void_lookups: int = Field(2, ge=0, description="look-ups answered NXDOMAIN or empty before permerror (RFC 7208 4.6.4)")


class DkimSettings(Section):
    enabled: bool = Field(True, description="verify DKIM signatures (RFC 6376, 8463)")
    max_signatures: int = Field(10, ge=1, description="signatures verified per message; the rest are ignored")
    min_key_bits: int = Field(1024, ge=512, description="RSA keys shorter than this fail (RFC 8301)")
    accept_sha1: bool = Field(False, description="count rsa-sha1 signatures as valid (RFC 8301 says they are not)")


class DmarcSettings(Section):
    enabled: bool = Field(True, description="evaluate DMARC (RFC 7489) for the RFC 5322.From domain")
    org_domain: Literal["psl", "tree-walk"] = Field("psl", description="organizational domain by the public suffix list, or by the DMARCbis DNS tree walk")
    psl_file: str = Field("", description="public suffix list file to use instead of the packaged one")
    on_reject: _ACTIONS = Field("reject", description="action for failing mail whose domain publishes p=reject")
    on_quarantine: _ACTIONS = Field("quarantine", description="action for failing mail whose domain publishes p=quarantine")
    overrides: dict[str, _ACTIONS] = Field(default_factory=dict, description="sending domain -> action for its failing mail, whatever it publishes")
    record: bool = Field(True, description="store every evaluation for aggregate reports")
    report_org: str = Field("", description="org_name in aggregate reports (empty = the authserv-id)")
    report_email: str = Field("", description="email in aggregate reports and From of the report mail (empty = dmarc-reports@<host name>)")


class ArcSettings(Section):
    enabled: bool = Field(True, description="verify ARC chains (RFC 8617)")
    trusted_sealers: list[Domain] = Field(default_factory=list, description="sealing domains whose recorded DMARC pass overrides a local DMARC failure")
    seal: Literal["never", "modified", "always"] = Field("modified", description="add our ARC set to delivered mail: never, when we changed the message, or always")
    key_file: str = Field("", description="PEM RSA private key for our ARC sets (empty = no sealing)")
    selector: str = Field("", description="selector of our ARC key (its public key is at <selector>._domainkey.<domain>)")
    domain: str = Field("", description="signing domain of our ARC sets")


class SpamSettings(Section):
    model: str = Field("", description="spam model file (empty = the model in the data directory if trained there, else the shipped one)")
    language_model: str = Field("", description="social-engineering language model file (empty = language-model.npz in the data directory if trained there, else cues only)")
    embedding_model: str = Field("", description="sentence-embedding phishing model file, read with the embeddings extra (empty = embedding-model.npz in the data directory if trained there, else none)")
    language_cues: bool = Field(True, description="find social-engineering cues (urgency, threats, credential or payment requests...) in the text")
    learn_margin: float = Field(2.0, gt=0, le=10, description="how far past the decision line (in log-odds) a learnt message is moved")
    internal_hosts: list[InternalHost] = Field(default_factory=lambda: ["localhost"], description="host names, domains (each also covers the hosts under it; no wildcards) or IP addresses of the site's own mail servers (MX, relays, mailbox servers): the Received headers they added at the top of a message are not spam-model features, so a model trained on exported mail learns the senders' paths, not how that mail was collected; mailward's own Received is always left out")


class AntivirusSettings(Section):
    eicar: bool = Field(True, description="recognise the EICAR test file")
    max_archive_depth: int = Field(5, ge=0, description="archive nesting followed when scanning")
    max_archive_members: int = Field(1000, ge=1, description="archive members scanned per message")
    max_unpacked_size: Size = Field("100MiB", description="bytes unpacked from archives per message")


class AttachmentSettings(Section):
    enabled: bool = Field(True, description="analyse every attachment and archive member statically")
    dangerous_extensions: list[str] = Field(default_factory=lambda: list(_dangerous_extensions()), description="file extensions that are dangerous, also inside containers (ATTACH_DANGEROUS_TYPE)")
    dangerous_kinds: list[str] = Field(default_factory=lambda: list(_dangerous_kinds()), description="content types (as identified from the bytes) that are dangerous whatever the name")
    max_seconds: Duration = Field("20s", description="time allowed to unpack and analyse the files of one message; past it ATTACH_ANALYSIS_INCOMPLETE")
    workers: int = Field(2, ge=0, description="worker processes the per-file analysers run in (killed and replaced past file_seconds); 0 = in the gateway's process, without the per-file bounds")
    file_seconds: Duration = Field("10s", description="time one file's analyser may run in its worker; past it the worker is killed and ATTACH_ANALYSIS_TIMEOUT")
    file_memory: Size = Field("1GiB", description="address space of an analyser worker; a file needing more is ATTACH_ANALYSIS_MEMORY")


class SandboxSettings(Section):
    backends: list[Literal["auto", "browser", "boxjs", "cape"]] = Field(default_factory=lambda: ["auto"], description="sandboxes files are detonated in: browser (HTML, SVG, URLs in headless Chromium), boxjs (JScript droppers), cape (a CAPE server); auto = the built-in ones whose programs are installed")
    deadline: Duration = Field("7m", description="longest time a message is held for its sandbox verdict; then ATTACH_SANDBOX_TIMEOUT decides (quarantine by default)")
    concurrency: int = Field(2, ge=1, description="detonations running at once on this node")
    queue: TaskQueue = Field("", description="task queue storage: empty = a SQLite file in data_dir, or redis://host:port/db shared by several nodes")
    run_seconds: Duration = Field("30s", description="time one detonation may run before it is killed")
    memory: Size = Field("2GiB", description="memory (data segment) one detonation may use")
    max_file_size: Size = Field("32MiB", description="largest file sent to a sandbox; larger ones are judged statically only")
    isolate_network: bool = Field(True, description="run built-in detonations in a network namespace with no way out (needs unshare and user namespaces)")
    chromium: str = Field("/usr/bin/chromium", description="the Chromium binary the browser sandbox drives")
    boxjs: str = Field("", description="the box-js program (empty = node_modules/.bin/box-js in data_dir or the working directory, then PATH)")
    cape_url: HttpUrl = Field("", description="base URL of a CAPE sandbox REST API, e.g. http://cape:8000/apiv2")
    cape_token: str = Field("", description="API token for CAPE (sent as Authorization: Token ...)")
    cape_poll: Duration = Field("20s", description="interval between CAPE status polls")
    cape_malicious_score: float = Field(7.0, description="CAPE malscore at or above which a file is malicious")
    cape_suspicious_score: float = Field(4.0, description="CAPE malscore at or above which a file is suspicious")


def _dangerous_extensions() -> tuple[str, ...]:
    from mailward.attachments.identify import DEFAULT_DANGEROUS_EXTENSIONS

    return DEFAULT_DANGEROUS_EXTENSIONS


def _dangerous_kinds() -> tuple[str, ...]:
    from mailward.attachments.identify import DEFAULT_DANGEROUS_KINDS

    return DEFAULT_DANGEROUS_KINDS


class OutboundSettings(Section):
    enabled: bool = Field(False, description="relay the organisation's own outbound mail from trusted connectors")
    relay: RelayUrl = Field("", description="smart host for outbound mail, smtp://host:port")
    client_networks: list[Network] = Field(default_factory=list, description="networks the organisation's outbound servers connect from")
    connector_cert_names: list[str] = Field(default_factory=list, description="TLS client-certificate names a trusted connector must present")
    client_ca_file: str = Field("", description="CA bundle that verifies connector client certificates")
    allowed_m365_tenant_ids: list[str] = Field(default_factory=list, description="Microsoft 365 tenant ids whose mail may leave through us")


class UrlSettings(Section):
    max_urls: int = Field(1000, ge=1, description="distinct URLs extracted per message; past it the cut is recorded (URLS_TRUNCATED)")
    rewrite: bool = Field(True, description="rewrite http(s) links of delivered mail to the click service, signed per recipient")
    click_base: HttpUrl = Field("", description="base URL of the click service in rewritten links (empty = web.public_url)")
    allow_domains: list[str] = Field(default_factory=list, description="hosts whose links are not rewritten: example.com is that host only, *.example.com any host under it")
    keys_file: str = Field("", description="signing keys of rewritten links, JSON, rotated with `mailward url keys rotate` (empty = url-keys.json in data_dir)")
    protected_domains: list[Domain] = Field(default_factory=list, description="domains whose lookalikes are flagged, besides smtp.accepted_domains and the brand list")
    lists_file: str = Field("", description="TOML file of brands, URL shorteners, free hosting and form services (empty = the shipped one)")
    max_subdomains: int = Field(4, ge=1, description="labels left of the registrable domain above which a host counts as excessive")
    max_length: int = Field(500, ge=32, description="URL length above which a URL counts as excessive")
    new_domain_warmup: int = Field(500, ge=0, description="registrable domains the gateway must have seen before a never-seen domain is a finding")
    click_through_suspicious: bool = Field(True, description="the warning page for a suspicious link offers to continue")
    click_through_malicious: bool = Field(False, description="the block page for a known-malicious link offers to continue")
    scanner_window: Duration = Field("20s", description="a click this soon after delivery counts as a link scanner, not a person")
    scanner_agents: list[str] = Field(default_factory=list, description="extra regular expressions of user agents that are link scanners")

    @model_validator(mode="after")
    def _rules(self) -> "UrlSettings":
        for rule in self.allow_domains:
            body = rule.removeprefix("*.")
            if not body or "*" in body or not re.fullmatch(r"[A-Za-z0-9.-]+", body):
                raise ValueError(f"allow_domains: {rule!r} is not a host or *.domain")
        for pattern in self.scanner_agents:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"scanner_agents: {pattern!r}: {error}") from None
        return self


_ENGINE_FAIL = Literal["tempfail", "quarantine", "tag", "deliver"]


class ClamavSettings(Section):
    address: str = Field("", description="clamd to scan files with: a unix socket path (/run/clamav/clamd.ctl) or HOST:PORT (empty = ClamAV not used)")
    timeout: Duration = Field("30s", description="time allowed for clamd to scan one file")
    max_size: Size = Field("25MiB", description="largest file sent to clamd; keep it at most clamd's StreamMaxLength. Larger files are reported as CLAMAV_TOO_BIG, never as clean")
    concurrency: int = Field(4, ge=1, description="files scanned by clamd at once from this node (at most clamd's MaxThreads)")
    on_fail: _ENGINE_FAIL = Field("tempfail", description="when clamd is down or errs (CLAMAV_FAIL): tempfail (answer 451 so the sender retries, keep the bytes), quarantine, tag or deliver")

    @model_validator(mode="after")
    def _address(self) -> "ClamavSettings":
        if self.address and not self.address.startswith(("/", "unix:")):
            try:
                parse_hostport(self.address, 3310)
            except ValueError:
                raise ValueError(f"address: {self.address!r} is neither a socket path "
                                 "(starting with /) nor HOST:PORT") from None
        return self


class YaraSettings(Section):
    enabled: bool = Field(True, description="match every file against YARA rules")
    builtin_rules: bool = Field(True, description="use the starter rule set shipped with mailward (macro droppers, HTML smuggling, script droppers, phishing kits)")
    rules_dir: str = Field("", description="directory of further *.yar / *.yara rule files; meta severity = malicious|suspicious, category = malware|phish")
    max_size: Size = Field("32MiB", description="largest file matched; larger files are reported as YARA_TOO_BIG, never as clean")
    timeout: Duration = Field("10s", description="time allowed to match one file; past it YARA_FAIL")
    on_fail: _ENGINE_FAIL = Field("tempfail", description="when matching fails (YARA_FAIL): tempfail (451), quarantine, tag or deliver")


class HashListSettings(Section):
    files: list[str] = Field(default_factory=list, description="files of SHA-256 hashes of known-bad files, one per line, optionally followed by a name; re-read when they change. The intelligence store's sha256 indicators are always used")


class ImpostorSettings(Section):
    enabled: bool = Field(True, description="look for impostors (BEC): borrowed names of protected people, lookalike domains, reply-to swaps, payment requests")
    partner_domains: list[Domain] = Field(default_factory=list, description="partners' and suppliers' domains protected like our accepted domains (their lookalikes are flagged)")
    organisation_names: list[str] = Field(default_factory=list, description="names of the organisation flagged in free-mail display names (empty = the first label of each accepted domain)")
    free_mail_domains: list[Domain] = Field(default_factory=list, description="free webmail domains besides the shipped list")
    first_contact_lookback: Duration = Field("365d", description="how far back the message index is searched for earlier mail between sender and recipient")
    max_text: int = Field(65536, ge=1024, description="characters of the text searched for payment, gift-card, bank-change, urgency and secrecy phrases")
class ReportSettings(Section):
    enabled: bool = Field(True, description="take user reports (REST, banner link, reporting address) and act on their verdicts")
    address: str = Field("", description="reporting mailbox mailward receives itself over SMTP, e.g. report-phish@example.com (empty = none)")
    mailbox_networks: list[Network] = Field(default_factory=list, description="client networks (the organisation's own mail servers) reports to the reporting address are taken from (empty = auth.trusted_networks)")
    min_confidence: float = Field(0.6, ge=0, le=1, description="verdict confidence below which a report goes to the analyst queue instead of being acted on")
    spam_threshold: float = Field(0.0, ge=0, description="spam score at or above which a reported message is spam (0 = the scores file's tag threshold)")
    simulation_senders: list[SenderRule] = Field(default_factory=list, description="sender addresses or @domains of the organisation's own phishing simulations (never retracted)")
    simulation_urls: list[str] = Field(default_factory=list, description="regular expressions of URLs used by the organisation's phishing simulations")
    per_reporter: str = Field("30/1h", description="reports one reporter may make (N/period); more get 429 or 450")
    max_message_size: Size = Field("10MiB", description="largest reported message accepted")
    max_forward_depth: int = Field(3, ge=1, le=10, description="forwards inside forwards unwrapped to find the original")
    cluster_window: Duration = Field("3d", description="how far apart look-alike messages may arrive to form one campaign")
    queue: TaskQueue = Field("", description="task queue storage: empty = a SQLite file in data_dir, or redis://host:port/db shared by several nodes")
    workers: int = Field(2, ge=1, description="reports analysed at once on this node")
    notify: bool = Field(True, description="email the reporter the outcome")
    notify_from: FromAddress = Field("", description="From address of outcome emails (empty = the reporting address, else security@<hostname>)")
    notify_relay: RelayUrl = Field("", description="where outcome emails go, smtp://host:port (empty = the delivery queue)")
    language: str = Field("en", description="language of outcome emails: en, de, fr, or one in templates_dir")
    languages: dict[str, str] = Field(default_factory=dict, description="reporter address or @domain -> language of their outcome emails")
    templates_dir: str = Field("", description="directory of outcome templates <language>/<verdict>.txt (empty = the shipped ones)")
    learn_spam: bool = Field(True, description="teach the spam model from campaigns that reports confirmed as spam")

    @model_validator(mode="after")
    def _report_rules(self) -> "ReportSettings":
        parse_rate(self.per_reporter)
        for pattern in self.simulation_urls:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"simulation_urls: {pattern!r}: {error}") from None
        if self.address and "@" not in self.address:
            raise ValueError(f"address: {self.address!r} is not an email address")
        if not re.fullmatch(r"[a-z]{2,8}", self.language):
            raise ValueError(f"language: {self.language!r} is not a language code such as en")
        return self

class ListSettings(Section):
    members: dict[str, list[str]] = Field(default_factory=dict, description="distribution lists and aliases mailward expands: list address -> member addresses (a member may itself be a list); each member gets its own copy, recorded with the list it came through")
    max_depth: int = Field(5, ge=1, description="lists nested inside lists are followed this deep")
    max_members: int = Field(1000, ge=1, description="recipients one message may expand to; the members past it get no copy and the log says so")

    @model_validator(mode="after")
    def _addresses(self) -> "ListSettings":
        for name, members in self.members.items():
            for address in (name, *members):
                local, at, domain = address.rpartition("@")
                if not (local and at and domain) or any(c.isspace() for c in address):
                    raise ValueError(f"members: {address!r} (in list {name!r}) is not an "
                                     "email address")
        return self


class TrapSettings(Section):
    lookback: Duration = Field("14d", description="how far back a retro-scan looks for delivered copies carrying a new indicator")
    remote_mailbox: Literal["none", "imap", "graph"] = Field("none", description="where copies handed to delivery.relay live, to pull them back: none, imap (section [imap]) or graph (section [graph])")
    exempt_mailboxes: list[str] = Field(default_factory=list, description="addresses whose copies are never pulled (the SOC's own, the reporting mailbox)")
    max_share: float = Field(0.05, ge=0, le=1, description="an indicator matching more than this share of the copies in the look-back is refused unless forced (a bare common domain)")
    max_share_min_copies: int = Field(20, ge=1, description="the share rule applies only to indicators matching at least this many copies")
    pull_malware: Literal["always", "unread", "never"] = Field("always", description="pull copies matching a malware indicator: always (read or unread), unread only, or never")
    pull_phish: Literal["always", "unread", "never"] = Field("always", description="pull copies matching a phishing indicator")
    pull_impostor: Literal["always", "unread", "never"] = Field("always", description="pull copies matching an impostor indicator")
    pull_spam: Literal["always", "unread", "never"] = Field("unread", description="pull copies matching a spam indicator (by default only while unread)")
    pull_attempts: int = Field(3, ge=1, description="attempts at one pull before it fails and raises its own alert")
    pull_backoff: Duration = Field("2s", description="delay before the second attempt at a pull; it doubles for each later one")
    pull_concurrency: int = Field(8, ge=1, description="pulls in progress at once")
    follow_forwards: bool = Field(True, description="link a message a local sender forwards (as an attachment or inline) to the copy it forwards, and pull the forward's copies with the original's")
    forward_hops: int = Field(3, ge=1, le=10, description="forwards of forwards followed from a pulled original")
    retract_mode: str = Field("folder", description="what a pull does: folder (move the copy into the recipient's Quarantine folder) or hold (take it out of the mailbox and keep its bytes in mailward's quarantine until restored; over Graph the copy waits in a hidden folder)")
    queue: TaskQueue = Field("", description="task queue storage for retro-scans and feed polls: empty = a SQLite file in data_dir, or redis://host:port/db shared by several nodes")
    poll_interval: Duration = Field("15m", description="how often TAXII collections and MISP are polled")
    feed_files: list[str] = Field(default_factory=list, description="indicator files (text, CSV, JSON, STIX 2.1) re-read on every poll")
    taxii: list[dict[str, str]] = Field(default_factory=list, description="TAXII 2.1 collections to poll: {url, user, password, source, category}")
    misp_url: HttpUrl = Field("", description="base URL of a MISP instance whose published events are polled")
    misp_key: str = Field("", description="MISP automation key")
    misp_verify_tls: bool = Field(True, description="check the MISP server's certificate")
    block_expiry: Duration = Field("30d", description="default life of a sender block and a campaign rule made from an incident")
    campaign_tlsh_distance: int = Field(70, ge=0, description="TLSH distance at or below which a body counts as a look-alike of a campaign's")


DAY = 86400.0


def shown_duration(seconds: float) -> str:
    """shown_duration - seconds as a person writes them: 30d, 36h, 90s."""
    for unit, size in (("d", DAY), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class RetentionSettings(Section):
    archive: Duration = Field("30d", description="how long delivered originals are kept under archive/DAY, for retro-scans and user reports; at least trap.lookback (0 = for ever)")
    parked: Duration = Field("14d", description="how long copies of messages that could not be judged (answered 451) are kept under spool/parked (0 = for ever)")
    quarantine: Duration = Field("30d", description="how long a held quarantine item is kept before it expires: deleted as from the console, its pending release requests closed (0 = for ever)")
    interval: Duration = Field("1h", description="how often the running gateway removes what is past these ages (mailward prune does it once by hand)")

    @field_validator("archive", "parked", "quarantine")
    @classmethod
    def _for_ever_or_a_day(cls, value: float) -> float:
        # A bare number is seconds: "quarantine = 30" must not empty the quarantine.
        if 0 < value < DAY:
            raise ValueError(f"{shown_duration(value)} is under a day; write a duration "
                             "such as 30d (a bare number is seconds), or 0 to keep for ever")
        return value

    @field_validator("interval")
    @classmethod
    def _minute_to_day(cls, value: float) -> float:
        if not 60 <= value <= DAY:
            raise ValueError(f"{shown_duration(value)} is not between 1m and 1d")
        return value


class ImapSettings(Section):
    host: str = Field("127.0.0.1", description="IMAP server holding the delivered mail")
    port: int = Field(143, ge=1, le=65535, description="its port")
    security: Literal["none", "starttls", "tls"] = Field("starttls", description="none (loopback only), starttls, or tls (implicit, port 993)")
    auth: Literal["master", "user"] = Field("master", description="master: log in as RECIPIENT<separator>ADMIN with the admin password (Dovecot master user); user: each recipient's own password from passwords_file")
    admin_user: str = Field("", description="the administrator (master) user name")
    admin_password: str = Field("", description="its password (prefer admin_password_file)")
    admin_password_file: str = Field("", description="file holding the administrator password")
    master_separator: str = Field("*", description="separator between recipient and master user in the login name")
    passwords_file: str = Field("", description="JSON object of address to password, for auth = user")
    use_move: bool = Field(True, description="use MOVE where the server has it (else COPY, STORE \\Deleted, UID EXPUNGE)")
    timeout: Duration = Field("30s", description="time allowed for one IMAP command")
    verify_tls: bool = Field(True, description="check the IMAP server's certificate")


class GraphSettings(Section):
    tenant_id: str = Field("", description="Microsoft Entra tenant id of the Exchange Online organisation")
    client_id: str = Field("", description="application (client) id with Mail.ReadWrite application permission")
    client_secret: str = Field("", description="its client secret (prefer client_secret_file)")
    client_secret_file: str = Field("", description="file holding the client secret")
    endpoint: HttpUrl = Field("https://graph.microsoft.com/v1.0", description="Graph API base URL")
    authority: HttpUrl = Field("https://login.microsoftonline.com", description="token endpoint base URL")
    timeout: Duration = Field("30s", description="time allowed for one Graph request")


class AlertSettings(Section):
    webhook_urls: list[HttpUrl] = Field(default_factory=list, description="URLs that receive each alert as JSON, signed in X-Mailward-Signature (HMAC-SHA256)")
    webhook_secret: str = Field("", description="HMAC key of webhook signatures (empty = a key generated in data_dir/alert.key)")
    email_to: list[str] = Field(default_factory=list, description="addresses that receive each alert by email")
    email_from: FromAddress = Field("", description="From of alert email (empty = mailward@<hostname>)")
    smtp_relay: RelayUrl = Field("", description="where alert email is sent, smtp://host:port (empty = delivery.relay, else the gateway's own SMTP listener)")
    syslog: SyslogUrl = Field("", description="syslog receiver for alerts, udp://host:port or tcp://host:port (RFC 5424, CEF payload)")
    timeout: Duration = Field("10s", description="time allowed for one notification")


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="lowest severity written")
    format: Literal["text", "json"] = Field("text", description="text for people, json for log collectors")


class Settings(Section):
    """The whole configuration; each attribute is one TOML table."""

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    banner: BannerSettings = Field(default_factory=BannerSettings)
    connection: ConnectionSettings = Field(default_factory=ConnectionSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    spf: SpfSettings = Field(default_factory=SpfSettings)
    dkim: DkimSettings = Field(default_factory=DkimSettings)
    dmarc: DmarcSettings = Field(default_factory=DmarcSettings)
    arc: ArcSettings = Field(default_factory=ArcSettings)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    antivirus: AntivirusSettings = Field(default_factory=AntivirusSettings)
    attachments: AttachmentSettings = Field(default_factory=AttachmentSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    urls: UrlSettings = Field(default_factory=UrlSettings)
    clamav: ClamavSettings = Field(default_factory=ClamavSettings)
    yara: YaraSettings = Field(default_factory=YaraSettings)
    hashlist: HashListSettings = Field(default_factory=HashListSettings)
    impostor: ImpostorSettings = Field(default_factory=ImpostorSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    trap: TrapSettings = Field(default_factory=TrapSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    lists: ListSettings = Field(default_factory=ListSettings)
    imap: ImapSettings = Field(default_factory=ImapSettings)
    graph: GraphSettings = Field(default_factory=GraphSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @model_validator(mode="after")
    def _no_open_relay(self) -> "Settings":
        host, _ = parse_hostport(self.smtp.listen, 25)
        if not self.smtp.accepted_domains and not _is_loopback(host):
            raise ValueError(
                "smtp.accepted_domains: is empty while smtp.listen is "
                f"{self.smtp.listen}, which is not loopback; that would be an "
                "open relay. List the domains you accept mail for.")
        if self.outbound.enabled and not self.outbound.relay:
            raise ValueError("outbound.relay: must be set when outbound.enabled is true")
        if self.arc.key_file and not (self.arc.selector and self.arc.domain):
            raise ValueError("arc.selector: arc.selector and arc.domain must be set "
                             "when arc.key_file is")
        return self

    @model_validator(mode="after")
    def _remote_mailbox(self) -> "Settings":
        remote, imap, graph = self.trap.remote_mailbox, self.imap, self.graph
        if remote == "imap":
            if imap.auth == "master" and not imap.admin_user:
                raise ValueError("imap.admin_user: must be set when trap.remote_mailbox is "
                                 "imap and imap.auth is master")
            if imap.auth == "user" and not imap.passwords_file:
                raise ValueError("imap.passwords_file: must be set when imap.auth is user")
            if imap.security == "none" and not _is_loopback(imap.host):
                raise ValueError(f"imap.security: none would send passwords in the clear to "
                                 f"{imap.host}; use starttls or tls")
        mode = self.trap.retract_mode
        if mode not in ("folder", "hold"):
            raise ValueError(f"trap.retract_mode: {mode!r} is neither folder nor hold")
        if remote == "graph" and not (graph.tenant_id and graph.client_id):
            raise ValueError("graph.tenant_id: graph.tenant_id and graph.client_id must be "
                             "set when trap.remote_mailbox is graph")
        return self

    @model_validator(mode="after")
    def _archive_covers_lookback(self) -> "Settings":
        keep, lookback = self.retention.archive, self.trap.lookback
        if keep and keep < lookback:
            raise ValueError(
                f"retention.archive: {shown_duration(keep)} is shorter than trap.lookback "
                f"({shown_duration(lookback)}); retro-scans look back on delivered "
                "originals, so keep them at least that long (or 0 = for ever)")
        return self

    # Derived locations under the data directory.

    @property
    def data_dir(self) -> Path:
        return Path(self.storage.data_dir).expanduser().resolve()

    @property
    def database_url(self) -> str:
        url = self.storage.database_url
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'mailward.db'}"
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            return "postgresql+asyncpg://" + url.split("://", 1)[1]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
        return url

    @property
    def hostname(self) -> str:
        return self.smtp.hostname or _fqdn()

    @property
    def click_base(self) -> str:
        return (self.urls.click_base or self.public_url).rstrip("/")

    @property
    def public_url(self) -> str:
        if self.web.public_url:
            return self.web.public_url.rstrip("/")
        host, port = parse_hostport(self.web.listen, 8025)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


def prepare_data_dir(settings: Settings, create: bool = True) -> Path:
    """prepare_data_dir - the data directory, made if asked; ConfigError if unusable."""
    path = settings.data_dir
    fix = "set storage.data_dir to a directory mailward may write"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"storage.data_dir: {path} is a file, not a directory; {fix}")
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ConfigError(f"storage.data_dir: cannot create {path}; {fix}")
    try:
        # A real write: access() says yes to root on read-only trees like /proc.
        os.rmdir(tempfile.mkdtemp(prefix=".mailward-check-", dir=parent))
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        what = "write in" if parent == path else "create"
        raise ConfigError(f"storage.data_dir: cannot {what} {path}: "
                          f"{error.strerror}; {fix}") from None
    _prepare_sqlite_dir(settings, create)
    return path


def _prepare_sqlite_dir(settings: Settings, create: bool) -> None:
    """_prepare_sqlite_dir - the directory of a storage.database_url SQLite file, as data_dir."""
    url = settings.storage.database_url
    if not url.startswith("sqlite"):
        return
    path = Path(url.split(":///", 1)[1]).expanduser()
    directory = path.parent
    fix = "set storage.database_url to a file in a directory mailward may write"
    if path.is_dir():
        raise ConfigError(f"storage.database_url: {path} is a directory, not a file; {fix}")
    if directory.is_dir():
        return
    if directory.exists():
        raise ConfigError(f"storage.database_url: {directory} is not a directory; {fix}")
    parent = next((p for p in directory.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ConfigError(f"storage.database_url: cannot create {directory}; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".mailward-check-", dir=parent))
        if create:
            directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"storage.database_url: the directory {directory} does not exist "
                          f"and cannot be created: {error.strerror}; {fix}") from None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_rate(text: str) -> tuple[int, float]:
    """parse_rate - ``N/period`` into (N, seconds); ``0`` means unlimited."""
    count, sep, period = str(text).partition("/")
    if not count.strip().isdigit() or not sep:
        raise ValueError(f"{text!r} is not N/period, e.g. 60/60s")
    return int(count), parse_duration(period)


_TYPE_NAMES = {"int_type": "an integer", "bool_type": "true or false",
               "float_type": "a number", "string_type": "a string in quotes",
               "list_type": "an array [...]", "dict_type": "a table {...}",
               "model_type": "a table"}


def _toml_kind(value: Any) -> str:
    """_toml_kind - what TOML type a value was written as, for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {_shown(value)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _format_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (see `mailward config defaults`)"
        elif item["type"] in _TYPE_NAMES:
            message = (f"expected {_TYPE_NAMES[item['type']]}, got "
                       f"{_toml_kind(item.get('input'))}")
        # A section's own check names its key first: "web" + "login_window: ..."
        named = re.match(r"([a-z_]+): ", message)
        if key and "." not in key and named and item["type"] == "value_error":
            key, message = f"{key}.{named.group(1)}", message[named.end():]
        lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)


def load_settings(path: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    """load_settings - read one TOML file over the embedded defaults."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte "
                              f"0x{error.object[error.start]:02x} at offset {error.start}); "
                              "save it as UTF-8") from None
        except OSError as error:
            raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = _as_toml(value)
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"config error: {_format_error(error)}") from None


def _as_toml(value: Any) -> Any:
    """_as_toml - an override given from Python as TOML would give it.

    The settings take TOML's types strictly; a caller's tuple is an array and a
    path is a string, as they would be written in the file.
    """
    if isinstance(value, (list, tuple)):
        return [_as_toml(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_toml(item) for key, item in value.items()}
    if isinstance(value, PurePath):
        return str(value)
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def defaults_toml() -> str:
    """defaults_toml - every key with its default and its comment, as TOML."""
    out = ["# mailward configuration: every key, its default and what it does.",
           "# A site file names only the keys it changes.", ""]
    for section_name, section_field in Settings.model_fields.items():
        section_cls = section_field.annotation
        out.append(f"[{section_name}]")
        for key, field in section_cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            out.append(f"# {field.description}")
            out.append(f"{key} = {_toml_value(default)}")
        out.append("")
    return "\n".join(out)


@functools.cache
def _fqdn() -> str:
    """_fqdn - this host's name, asked of the resolver once per process."""
    return socket.getfqdn()
