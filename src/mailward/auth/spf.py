"""SPF (RFC 7208): may this IP send mail for this domain?

An asynchronous evaluator of ``check_host()`` over the shared resolver, so
no look-up blocks the event loop: every mechanism and modifier, the macro
language (explanation macros included), ``exp=``, ``redirect=``, IPv6, and
the seven results. The checks of the MAIL FROM identity and of the HELO
identity (RFC 7208 2.3, 2.4) run while the client waits at MAIL.

SECURITY: records come from the sender's DNS and are hostile. The whole
record is parsed before any of it is evaluated (a syntax error anywhere is
a permerror); at most 10 DNS-querying terms (include, a, mx, ptr, exists,
redirect) and 2 void look-ups are allowed per evaluation, an ``mx`` term may
name at most 10 hosts and a ``ptr`` term follows at most 10 names (RFC 7208
4.6.4), so loops through include and redirect end as permerror; the whole
evaluation runs under a time-out; non-ASCII and over-long names are errors,
never exceptions.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import ClassVar

from mailward.auth.dns import DnsError, DnsFailure, Resolver
from mailward.pipeline import Stage, Task
from mailward.verdict import Category, Finding

log = logging.getLogger("mailward.auth")

MAX_DNS_TERMS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_HOSTS = 10
MAX_PTR_NAMES = 10
DEFAULT_EXPLANATION = "SPF fail: the sending host is not authorised by the domain"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfResult(enum.StrEnum):
    """The results of check_host() (RFC 7208 2.6)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


_QUALIFIERS = {"+": SpfResult.PASS, "-": SpfResult.FAIL, "~": SpfResult.SOFTFAIL,
               "?": SpfResult.NEUTRAL}


class SpfError(Exception):
    """Evaluation stops with temperror or permerror; the text says why."""

    def __init__(self, result: SpfResult, reason: str) -> None:
        super().__init__(reason)
        self.result = result
        self.reason = reason


def _perm(reason: str) -> SpfError:
    return SpfError(SpfResult.PERMERROR, reason)


@dataclass(frozen=True, slots=True)
class SpfOutcome:
    """What one check_host() found, with the evidence for a person."""

    result: SpfResult
    domain: str
    scope: str
    reason: str
    explanation: str = ""
    mechanism: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"result": str(self.result), "domain": self.domain, "scope": self.scope,
                "reason": self.reason, "explanation": self.explanation,
                "mechanism": self.mechanism}


# Record syntax (RFC 7208 12, collected ABNF).

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*")
_MACRO = re.compile(r"%(?:\{([A-Za-z])(\d*)(r?)([.\-+,/_=]*)\}|%|_|-)", re.IGNORECASE)
_MACRO_LITERAL = re.compile(r"[\x21-\x24\x26-\x7e]")
_TOPLABEL = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]+|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9]",
                       re.ASCII)
_IP4 = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}")
_CIDR = re.compile(r"(?:/(0|[1-9]\d{0,2}))?(?://(0|[1-9]\d{0,2}))?$")
_DOMAIN_MECHANISMS = {"a", "mx", "ptr", "include", "exists"}
_DNS_TERMS = {"a", "mx", "ptr", "include", "exists"}


@dataclass(frozen=True, slots=True)
class Directive:
    """A qualifier and a mechanism with its argument and CIDR lengths."""

    qualifier: SpfResult
    mechanism: str
    argument: str = ""
    cidr4: int = 32
    cidr6: int = 128
    text: str = ""


@dataclass(frozen=True, slots=True)
class SpfRecord:
    """A parsed record: its directives in order, and its two modifiers."""

    directives: list[Directive]
    redirect: str | None = None
    explanation: str | None = None


def check_macro_string(text: str, exp: bool = False) -> None:
    """check_macro_string - raise permerror unless text is a macro-string (RFC 7208 7.1)."""
    position = 0
    while position < len(text):
        char = text[position]
        if char == "%":
            match = _MACRO.match(text, position)
            if not match:
                raise _perm(f"bad macro in {text!r}")
            letter = (match.group(1) or "").lower()
            if letter and letter not in "slodiphcrtv":
                raise _perm(f"unknown macro letter %{{{letter}}} in {text!r}")
            if letter in ("c", "r", "t") and letter and not exp:
                raise _perm(f"macro %{{{letter}}} is allowed only in exp text")
            if match.group(2) and int(match.group(2)) == 0:
                raise _perm(f"macro digit transformer of 0 in {text!r}")
            position = match.end()
        elif _MACRO_LITERAL.match(char) or (exp and char == " "):
            position += 1
        else:
            raise _perm(f"character {char!r} not allowed in {text!r}")


def check_domain_spec(spec: str) -> None:
    """check_domain_spec - raise permerror unless spec is a domain-spec (RFC 7208 7.1)."""
    if not spec:
        raise _perm("empty domain-spec")
    check_macro_string(spec)
    if _MACRO.search(spec) and (spec.endswith("}") or spec[-2:] in ("%%", "%_", "%-")):
        last = list(_MACRO.finditer(spec))[-1]
        if last.end() == len(spec):
            return
    labels = spec.rstrip(".") if spec.endswith(".") else spec
    if "." not in labels:
        raise _perm(f"domain-spec {spec!r} has no top label")
    top = labels.rsplit(".", 1)[1]
    if not _TOPLABEL.fullmatch(top):
        raise _perm(f"domain-spec {spec!r} ends in an invalid top label {top!r}")


def _cidr(text: str, term: str) -> tuple[str, int, int]:
    """_cidr - split a trailing dual-cidr-length off an argument."""
    match = re.search(r"(/\d*)?(//\d*)?$", text)
    tail = match.group(0) if match else ""
    lengths = _CIDR.match(tail)
    if tail and not lengths:
        raise _perm(f"bad CIDR length in {term!r}")
    cidr4 = int(lengths.group(1)) if lengths and lengths.group(1) else 32
    cidr6 = int(lengths.group(2)) if lengths and lengths.group(2) else 128
    if cidr4 > 32 or cidr6 > 128:
        raise _perm(f"CIDR length out of range in {term!r}")
    return text[:len(text) - len(tail)], cidr4, cidr6


def _directive(term: str) -> Directive:
    """_directive - one mechanism term (RFC 7208 5)."""
    qualifier = SpfResult.PASS
    body = term
    if body[:1] in _QUALIFIERS:
        qualifier, body = _QUALIFIERS[body[0]], body[1:]
    name, colon, argument = body.partition(":")
    if not colon and "/" in name:
        name, slash, rest = name.partition("/")
        argument, colon = "/" + rest, ""
    name = name.lower()
    if name == "all":
        if colon or argument:
            raise _perm(f"'all' takes no argument: {term!r}")
        return Directive(qualifier, "all", text=term)
    if name in ("ip4", "ip6"):
        if not colon:
            raise _perm(f"{name} needs a network: {term!r}")
        return _ip_directive(qualifier, name, argument, term)
    if name in ("include", "exists"):
        if not colon:
            raise _perm(f"{name} needs a domain: {term!r}")
        check_domain_spec(argument)
        return Directive(qualifier, name, argument, text=term)
    if name == "ptr":
        if colon:
            check_domain_spec(argument)
        elif argument:
            raise _perm(f"ptr takes no CIDR length: {term!r}")
        return Directive(qualifier, "ptr", argument, text=term)
    if name in ("a", "mx"):
        domain, cidr4, cidr6 = _cidr(argument, term)
        if colon:
            check_domain_spec(domain)
        elif domain:
            raise _perm(f"bad {name} term {term!r}")
        return Directive(qualifier, name, domain, cidr4, cidr6, term)
    raise _perm(f"unknown mechanism {name!r}")


def _ip_directive(qualifier: SpfResult, name: str, argument: str, term: str) -> Directive:
    """_ip_directive - ip4:/ip6: with an optional prefix length (RFC 7208 5.6)."""
    address, slash, length = argument.partition("/")
    limit = 32 if name == "ip4" else 128
    if slash and not re.fullmatch(r"0|[1-9]\d{0,2}", length):
        raise _perm(f"bad prefix length in {term!r}")
    prefix = int(length) if slash else limit
    if prefix > limit:
        raise _perm(f"prefix length out of range in {term!r}")
    try:
        if name == "ip4":
            if not _IP4.fullmatch(address):
                raise ValueError(address)
            ipaddress.IPv4Address(address)
        else:
            if ":" not in address:
                raise ValueError(address)
            ipaddress.IPv6Address(address)
    except ValueError:
        raise _perm(f"bad address in {term!r}") from None
    return Directive(qualifier, name, address, prefix if name == "ip4" else 32,
                     prefix if name == "ip6" else 128, term)


def parse_record(text: str) -> SpfRecord:
    """parse_record - the terms of an SPF record, or permerror (RFC 7208 4.6)."""
    if not text.isascii():
        raise _perm("the record holds non-ASCII characters")
    terms = text.split(" ")
    directives: list[Directive] = []
    redirect = explanation = None
    for term in terms[1:]:
        if not term:
            continue
        modifier = re.match(r"([A-Za-z][A-Za-z0-9\-_.]*)=(.*)$", term)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name == "redirect":
                if redirect is not None:
                    raise _perm("more than one redirect= modifier")
                check_domain_spec(value)
                redirect = value
            elif name == "exp":
                if explanation is not None:
                    raise _perm("more than one exp= modifier")
                check_domain_spec(value)
                explanation = value
            else:
                check_macro_string(value)
            continue
        if "=" in term.split(":", 1)[0]:
            raise _perm(f"bad modifier {term!r}")
        directives.append(_directive(term))
    return SpfRecord(directives, redirect, explanation)


def is_spf_record(text: str) -> bool:
    """is_spf_record - the record starts with v=spf1 then a space or ends (RFC 7208 4.5)."""
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


def valid_domain(domain: str) -> bool:
    """valid_domain - a multi-label name with no empty or over-long label (RFC 7208 4.3)."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or len(name) > 253 or "." not in name or not name.isascii():
        return False
    labels = name.split(".")
    return all(0 < len(label) <= 63 for label in labels) and not name.startswith("[")


# Evaluation.


@dataclass(slots=True)
class _State:
    """What one check_host() evaluation counts across include and redirect."""

    ip: IpAddress
    sender: str
    helo: str
    receiver: str
    dns_terms: int = 0
    void_lookups: int = 0
    validated: dict[str, str | None] = field(default_factory=dict)

    @property
    def local_part(self) -> str:
        return self.sender.rpartition("@")[0] or "postmaster"

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]


def _client_ip(ip: str) -> IpAddress:
    address = ipaddress.ip_address(ip.strip().strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _dotted_ip(ip: IpAddress) -> str:
    """_dotted_ip - %{i}: dotted quad, or dotted nibbles for IPv6 (RFC 7208 7.3)."""
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", "").upper())


def _reverse_name(ip: IpAddress) -> str:
    return ip.reverse_pointer


class SpfEvaluator:
    """check_host() over the shared asynchronous resolver."""

    def __init__(self, resolver: Resolver, *, receiver: str = "unknown",
                 max_void_lookups: int = MAX_VOID_LOOKUPS, timeout: float = 20.0,
                 clock=time.time) -> None:
        self.resolver = resolver
        self.receiver = receiver
        self.max_void_lookups = max_void_lookups
        self.timeout = timeout
        self.clock = clock

    async def check_mail_from(self, ip: str, mail_from: str, helo: str) -> SpfOutcome:
        """check_mail_from - the MAIL FROM identity; the HELO one for <> (RFC 7208 2.4)."""
        if not mail_from or "@" not in mail_from:
            outcome = await self.check_host(ip, helo, f"postmaster@{helo}", helo)
            return _rescope(outcome, "mfrom")
        domain = mail_from.rpartition("@")[2]
        sender = mail_from if mail_from.rpartition("@")[0] else f"postmaster@{domain}"
        return await self.check_host(ip, domain, sender, helo, scope="mfrom")

    async def check_helo(self, ip: str, helo: str) -> SpfOutcome:
        """check_helo - the HELO identity (RFC 7208 2.3)."""
        return await self.check_host(ip, helo, f"postmaster@{helo}", helo, scope="helo")

    async def check_host(self, ip: str, domain: str, sender: str, helo: str,
                         scope: str = "mfrom") -> SpfOutcome:
        """check_host - the result of RFC 7208 4 for one identity."""
        try:
            address = _client_ip(ip)
        except ValueError:
            return SpfOutcome(SpfResult.PERMERROR, domain, scope, f"bad client IP {ip!r}")
        state = _State(address, sender, helo, self.receiver)
        try:
            async with asyncio.timeout(self.timeout):
                result, reason, mechanism, explanation = await self._check(state, domain, 0)
        except SpfError as error:
            return SpfOutcome(error.result, domain, scope, error.reason)
        except TimeoutError:
            return SpfOutcome(SpfResult.TEMPERROR, domain, scope,
                              f"evaluation took longer than {self.timeout:g}s")
        return SpfOutcome(result, domain, scope, reason, explanation, mechanism)

    async def _check(self, state: _State, domain: str,
                     depth: int) -> tuple[SpfResult, str, str, str]:
        """_check - evaluate the record of one domain (RFC 7208 4.4 - 4.7)."""
        domain = domain[:-1] if domain.endswith(".") else domain
        if not valid_domain(domain):
            return SpfResult.NONE, f"{domain!r} is not a valid domain name", "", ""
        record_text = await self._record(domain)
        if record_text is None:
            return SpfResult.NONE, f"no SPF record at {domain}", "", ""
        record = parse_record(record_text)
        for directive in record.directives:
            if await self._matches(state, directive, domain, depth):
                result = directive.qualifier
                explanation = ""
                if result == SpfResult.FAIL:
                    explanation = await self._explain(state, record, domain)
                return (result, f"{domain} matched {directive.text}", directive.text,
                        explanation)
        if record.redirect is not None:
            return await self._redirect(state, record.redirect, domain, depth)
        return SpfResult.NEUTRAL, f"no mechanism of {domain} matched", "", ""

    async def _redirect(self, state: _State, spec: str, domain: str,
                        depth: int) -> tuple[SpfResult, str, str, str]:
        """_redirect - check_host() of the redirect= target (RFC 7208 6.1)."""
        self._count_term(state)
        target = await self._target(state, spec, domain)
        if not valid_domain(target):
            raise _perm(f"redirect= target {target!r} is not a valid domain")
        result, reason, mechanism, explanation = await self._check(state, target, depth + 1)
        if result == SpfResult.NONE:
            raise _perm(f"redirect= target {target} has no SPF record")
        return result, reason, mechanism, explanation

    async def _record(self, domain: str) -> str | None:
        """_record - the one SPF record of a domain; None if there is none (RFC 7208 4.5)."""
        try:
            texts = await self.resolver.txt(domain)
        except DnsError as error:
            if error.is_void or error.kind == DnsFailure.BADNAME:
                return None
            raise SpfError(SpfResult.TEMPERROR, f"TXT look-up of {domain}: {error.kind}")
        records = [text for text in texts if is_spf_record(text)]
        if len(records) > 1:
            raise _perm(f"{domain} publishes {len(records)} SPF records")
        return records[0] if records else None

    def _count_term(self, state: _State) -> None:
        """_count_term - at most 10 DNS-querying terms (RFC 7208 4.6.4)."""
        state.dns_terms += 1
        if state.dns_terms > MAX_DNS_TERMS:
            raise _perm(f"more than {MAX_DNS_TERMS} DNS-querying terms")

    def _void(self, state: _State) -> None:
        """_void - at most 2 look-ups answered NXDOMAIN or no data (RFC 7208 4.6.4)."""
        state.void_lookups += 1
        if state.void_lookups > self.max_void_lookups:
            raise _perm(f"more than {self.max_void_lookups} void look-ups")

    async def _query(self, state: _State, name: str, rdtype: str,
                     count_void: bool = True) -> list[str]:
        """_query - records of a term's look-up; temperror on DNS failure (RFC 7208 5)."""
        try:
            if rdtype == "MX":
                return [host for _, host in await self.resolver.mx(name)]
            if rdtype == "PTR":
                return await self.resolver.ptr(name)
            return await self.resolver.addresses(name, rdtype)
        except DnsError as error:
            if error.is_void or error.kind == DnsFailure.BADNAME:
                if count_void:
                    self._void(state)
                return []
            raise SpfError(SpfResult.TEMPERROR, f"{rdtype} look-up of {name}: {error.kind}")

    async def _matches(self, state: _State, directive: Directive, domain: str,
                       depth: int) -> bool:
        """_matches - does one mechanism match the client (RFC 7208 5)?"""
        kind = directive.mechanism
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            return _in_network(state.ip, directive)
        self._count_term(state)
        target = await self._target(state, directive.argument, domain) \
            if directive.argument else domain
        if kind == "include":
            return await self._include(state, target, depth)
        if kind == "exists":
            return bool(await self._query(state, target, "A"))
        if kind == "a":
            return _any_in(state.ip, await self._addresses(state, target), directive)
        if kind == "mx":
            return await self._mx(state, target, directive)
        return await self._ptr(state, target)

    async def _include(self, state: _State, target: str, depth: int) -> bool:
        """_include - match when the included domain passes (RFC 7208 5.2)."""
        result, reason, _, _ = await self._check(state, target, depth + 1)
        if result == SpfResult.PASS:
            return True
        if result in (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL):
            return False
        if result == SpfResult.NONE:
            raise _perm(f"include:{target} has no SPF record")
        raise SpfError(result, f"include:{target}: {reason}")

    async def _addresses(self, state: _State, name: str, count_void: bool = True) -> list[str]:
        rdtype = "A" if state.ip.version == 4 else "AAAA"
        return await self._query(state, name, rdtype, count_void)

    async def _mx(self, state: _State, target: str, directive: Directive) -> bool:
        """_mx - the client is one of the domain's mail exchangers (RFC 7208 5.4)."""
        hosts = await self._query(state, target, "MX")
        if len(hosts) > MAX_MX_HOSTS:
            raise _perm(f"{target} has more than {MAX_MX_HOSTS} MX records")
        for host in hosts:
            if _any_in(state.ip, await self._addresses(state, host, False), directive):
                return True
        return False

    async def _ptr(self, state: _State, target: str) -> bool:
        """_ptr - a validated host name of the client is in the domain (RFC 7208 5.5)."""
        target = target.lower().rstrip(".")
        for name in await self._validated_names(state):
            if name == target or name.endswith("." + target):
                return True
        return False

    async def _validated_names(self, state: _State, count_void: bool = True) -> list[str]:
        """_validated_names - PTR names whose addresses include the client (RFC 7208 5.5)."""
        try:
            names = await self._query(state, _reverse_name(state.ip), "PTR", count_void)
        except SpfError:
            return []
        validated = []
        for name in names[:MAX_PTR_NAMES]:
            try:
                addresses = await self._addresses(state, name, False)
            except SpfError:
                continue
            if any(_client_ip(a) == state.ip for a in addresses):
                validated.append(name)
        return validated

    async def _explain(self, state: _State, record: SpfRecord, domain: str) -> str:
        """_explain - the exp= text for a fail, or the default one (RFC 7208 6.2)."""
        if record.explanation is None:
            return DEFAULT_EXPLANATION
        try:
            target = await self._target(state, record.explanation, domain)
            texts = await self.resolver.txt(target)
            if len(texts) != 1 or not texts[0].isascii():
                return DEFAULT_EXPLANATION
            check_macro_string(texts[0], exp=True)
            return await self._expand_exp(state, texts[0], domain)
        except (DnsError, SpfError):
            return DEFAULT_EXPLANATION

    async def _target(self, state: _State, spec: str, domain: str) -> str:
        """_target - a domain-spec expanded; %{p} validates the client's name first."""
        if "%{p" in spec.lower():
            await self._ptr_macro(state)
        return self._expand(state, spec, domain)

    async def _expand_exp(self, state: _State, text: str, domain: str) -> str:
        if "%{p" in text.lower():
            await self._ptr_macro(state)
        return self._expand(state, text, domain, exp=True)

    async def _ptr_macro(self, state: _State) -> None:
        key = str(state.ip)
        if key not in state.validated:
            names = await self._validated_names(state, count_void=False)
            state.validated[key] = names[0] if names else None

    def _expand(self, state: _State, spec: str, domain: str, exp: bool = False) -> str:
        """_expand - macro expansion of a domain-spec or exp text (RFC 7208 7)."""

        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            if token == "%%":
                return "%"
            if token == "%_":
                return " "
            if token == "%-":
                return "%20"
            letter = match.group(1)
            value = self._macro_value(state, letter.lower(), domain)
            value = _transform(value, match.group(2), match.group(3), match.group(4))
            if letter.isupper():
                value = urllib.parse.quote(value, safe="")
            return value

        expanded = _MACRO.sub(replace, spec)
        if not exp:
            expanded = _truncate(expanded)
        return expanded

    def _macro_value(self, state: _State, letter: str, domain: str) -> str:
        """_macro_value - the value of one macro letter (RFC 7208 7.2)."""
        if letter == "s":
            return state.sender
        if letter == "l":
            return state.local_part
        if letter == "o":
            return state.sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            return _dotted_ip(state.ip)
        if letter == "p":
            return state.validated.get(str(state.ip)) or "unknown"
        if letter == "v":
            return "in-addr" if state.ip.version == 4 else "ip6"
        if letter == "h":
            return state.helo
        if letter == "c":
            return str(state.ip)
        if letter == "r":
            return state.receiver
        if letter == "t":
            return str(int(self.clock()))
        raise _perm(f"unknown macro letter {letter!r}")


def _transform(value: str, digits: str, reverse: str, delimiters: str) -> str:
    """_transform - split, reverse and keep the right-hand parts (RFC 7208 7.3)."""
    if not digits and not reverse and not delimiters:
        return value
    parts = re.split("[" + re.escape(delimiters or ".") + "]", value)
    if reverse:
        parts.reverse()
    if digits:
        parts = parts[-int(digits):]
    return ".".join(parts)


def _truncate(name: str) -> str:
    """_truncate - drop left labels until the name fits in 253 octets (RFC 7208 7.3)."""
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


def _in_network(ip: IpAddress, directive: Directive) -> bool:
    if directive.mechanism == "ip4":
        if ip.version != 4:
            return False
        return ip in ipaddress.IPv4Network(f"{directive.argument}/{directive.cidr4}",
                                           strict=False)
    if ip.version != 6:
        return False
    return ip in ipaddress.IPv6Network(f"{directive.argument}/{directive.cidr6}",
                                       strict=False)


def _any_in(ip: IpAddress, addresses: list[str], directive: Directive) -> bool:
    """_any_in - the client is in one of the networks of the addresses and CIDR length."""
    length = directive.cidr4 if ip.version == 4 else directive.cidr6
    for text in addresses:
        try:
            network = ipaddress.ip_network(f"{text}/{length}", strict=False)
        except ValueError:
            continue
        if network.version == ip.version and ip in network:
            return True
    return False


def _rescope(outcome: SpfOutcome, scope: str) -> SpfOutcome:
    return SpfOutcome(outcome.result, outcome.domain, scope, outcome.reason,
                      outcome.explanation, outcome.mechanism)


# The check.

_SYMBOLS = {result: f"SPF_{result.upper()}" for result in SpfResult}
_HELO_SYMBOLS = {result: f"SPF_HELO_{result.upper()}" for result in SpfResult}
_MEANINGS = {
    SpfResult.PASS: "the client is authorised to send for the domain",
    SpfResult.FAIL: "the domain says the client may not send for it",
    SpfResult.SOFTFAIL: "the domain says the client is probably not authorised",
    SpfResult.NEUTRAL: "the domain makes no assertion about the client",
    SpfResult.NONE: "the domain publishes no SPF record",
    SpfResult.TEMPERROR: "a DNS failure stopped the SPF evaluation",
    SpfResult.PERMERROR: "the domain's SPF record is broken or too expensive",
}


def spf_authres(outcome: SpfOutcome) -> str:
    """spf_authres - the resinfo of one SPF outcome (RFC 8601 2.7.2)."""
    from mailward.auth.results import method_result

    prop = "smtp.mailfrom" if outcome.scope == "mfrom" else "smtp.helo"
    return method_result("spf", str(outcome.result), outcome.reason,
                         [(prop, outcome.domain)])


class SpfCheck:
    """SPF of MAIL FROM (and of HELO) while the client waits at MAIL."""

    name: ClassVar[str] = "spf"
    stage: ClassVar[Stage] = Stage.MAIL
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        **{_SYMBOLS[r]: f"MAIL FROM: {text}" for r, text in _MEANINGS.items()},
        **{_HELO_SYMBOLS[r]: f"HELO: {text}" for r, text in _MEANINGS.items()},
    }

    def __init__(self, evaluator: SpfEvaluator, helo: bool, trusted: list[str]) -> None:
        self.evaluator = evaluator
        self.helo = helo
        self.trusted = trusted

    @classmethod
    def from_services(cls, services) -> "SpfCheck | None":
        settings = services.settings
        if not settings.spf.enabled:
            return None
        evaluator = SpfEvaluator(services.resolver, receiver=settings.hostname,
                                 max_void_lookups=settings.spf.max_void_lookups,
                                 timeout=settings.spf.timeout)
        return cls(evaluator, settings.spf.helo, list(settings.auth.trusted_networks))

    async def check(self, task: Task) -> list[Finding]:
        from mailward.auth import is_trusted_peer

        envelope = task.envelope
        if not envelope.peer_ip or is_trusted_peer(self.trusted, envelope.peer_ip):
            return []
        helo = envelope.helo.strip().strip("[]")
        jobs = [self.evaluator.check_mail_from(envelope.peer_ip, envelope.mail_from, helo)]
        if self.helo and valid_domain(helo):
            jobs.append(self.evaluator.check_helo(envelope.peer_ip, helo))
        outcomes = await asyncio.gather(*jobs)
        findings = []
        for outcome in outcomes:
            symbols = _SYMBOLS if outcome.scope == "mfrom" else _HELO_SYMBOLS
            detail = f"{outcome.scope} {outcome.domain}: {outcome.result} ({outcome.reason})"
            task.log.debug("spf %s", detail)
            data = {**outcome.as_dict(), "authres": spf_authres(outcome)}
            findings.append(Finding(symbols[outcome.result], Category.AUTH, detail, data=data))
        return findings
