"""ARC (RFC 8617): verify the chain of custody, and seal what we change.

Verification follows RFC 8617 5.2 with dkimpy: instance numbering, the
``cv=`` rules, every ARC-Seal and the newest ARC-Message-Signature. As for
DKIM, the keys are fetched first through the shared asynchronous resolver
and dkimpy answers from them in a worker thread. A configured list of
trusted sealers lets a forwarder's recorded DMARC pass stand in for a local
DMARC failure (the DMARC check decides that, from what this check found).

When mailward changes a message (the banner, rewritten links), the
original DKIM signatures break downstream; it then adds its own ARC set,
signed with the configured key, whose ARC-Authentication-Results copies our
Authentication-Results, so the next hop can trust what we saw.

SECURITY: ARC headers are hostile input: malformed sets, duplicate
instances, more than 50 instances, keys that do not parse give ``fail``,
never an exception. The private key is read once at start-up and never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import dkim
from dkim import HASH_ALGORITHMS
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key
from dkim.util import InvalidTagValueList, parse_tag_value

from mailward.auth.dkim import _QUIET, fetch_keys, header_fields, key_name
from mailward.auth.dns import Resolver
from mailward.pipeline import INLINE_BYTES, Stage, Task
from mailward.verdict import Category, Finding

if TYPE_CHECKING:
    from mailward.message import Message
    from mailward.verdict import Verdict

log = logging.getLogger("mailward.auth")

MAX_INSTANCES = 50
_ARC_NAMES = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
_RESINFO = re.compile(r"\b([a-z0-9-]+)\s*=\s*([a-z]+)", re.IGNORECASE)
_HEADER_FROM = re.compile(r"header\.from\s*=\s*([^\s;()]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ArcSet:
    """One validated ARC set: who sealed it and what its AAR recorded."""

    instance: int
    seal_domain: str
    signature_domain: str
    cv: str
    aar: str

    def recorded(self, method: str) -> str | None:
        """recorded - the result the AAR gives for a method (dmarc, spf...), or None."""
        body = self.aar.split(";", 1)[1] if ";" in self.aar else ""
        for part in body.split(";"):
            match = _RESINFO.search(part)
            if match and match.group(1).lower() == method:
                return match.group(2).lower()
        return None

    def recorded_from(self) -> str | None:
        match = _HEADER_FROM.search(self.aar)
        return match.group(1).lower().strip('"') if match else None


@dataclass(slots=True)
class ArcResult:
    """The chain validation result (RFC 8617 4.4) and the sets behind it."""

    cv: str
    reason: str
    sets: list[ArcSet] = field(default_factory=list)
    terminated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"cv": self.cv, "reason": self.reason, "terminated": self.terminated,
                "sets": [{"instance": s.instance, "seal_domain": s.seal_domain,
                          "signature_domain": s.signature_domain, "cv": s.cv,
                          "aar": s.aar[:500]} for s in self.sets]}


def _word(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return "fail" if value is None else str(value).lower()


class ArcVerifier:
    """Validate an ARC chain with keys fetched through our resolver."""

    def __init__(self, resolver: Resolver, *, min_key_bits: int = 1024) -> None:
        self.resolver = resolver
        self.min_key_bits = min_key_bits

    async def verify(self, raw: bytes) -> ArcResult:
        """verify - pass, fail or none for the chain on this message."""
        fields = header_fields(raw, (b"arc-seal", b"arc-message-signature",
                                     b"arc-authentication-results"))
        seals, signatures = fields[b"arc-seal"], fields[b"arc-message-signature"]
        if not seals and not signatures and not fields[b"arc-authentication-results"]:
            return ArcResult("none", "the message carries no ARC set")
        if len(seals) > MAX_INSTANCES or len(signatures) > MAX_INSTANCES:
            return ArcResult("fail", f"more than {MAX_INSTANCES} ARC sets")
        names = set()
        for value in seals + signatures:
            try:
                tags = parse_tag_value(value)
            except (InvalidTagValueList, ValueError, IndexError):
                continue
            name = key_name(tags)
            if name:
                names.add(name)
        keys = await fetch_keys(self.resolver, names)
        answers = {name: (key.text.encode("utf-8", "replace") if key.text else None)
                   for name, key in keys.items()}
        if len(raw) <= INLINE_BYTES:  # on the loop, as a small message's DKIM check
            return self._verify(raw, answers)
        return await asyncio.to_thread(self._verify, raw, answers)

    def _verify(self, raw: bytes, answers: dict[str, bytes | None]) -> ArcResult:
        """_verify - dkimpy's chain validation over the fetched keys (RFC 8617 5.2)."""

        def lookup(name: bytes, timeout: float = 5) -> bytes | None:
            text = name.decode("ascii", "replace").lower().rstrip(".")
            return answers.get(text)

        try:
            arc = dkim.ARC(raw, logger=_QUIET, minkey=self.min_key_bits)
            cv, results, reason = arc.verify(dnsfunc=lookup)
        except Exception as error:  # hostile input must end as fail, whatever dkimpy does
            return ArcResult("fail", f"{type(error).__name__}: {str(error)[:200]}")
        sets = [ArcSet(int(r.get("instance", 0)), _word(r.get("as-domain")),
                       _word(r.get("ams-domain")), _word(r.get("cv")),
                       (r.get("aar-value") or b"").decode("utf-8", "replace").strip())
                for r in results]
        return ArcResult(_word(cv) if cv is not None else "fail", str(reason)[:300],
                         sorted(sets, key=lambda s: s.instance), terminated=cv is None)


def trusted_pass(result: ArcResult, trusted: list[str], from_domain: str) -> ArcSet | None:
    """trusted_pass - the newest set of a trusted sealer that recorded a DMARC pass.

    Only a validated chain counts (RFC 8617 7.2); the sealer's AAR must
    record dmarc=pass, for the same From domain when it names one.
    """
    if result.cv != "pass":
        return None
    wanted = {domain.lower() for domain in trusted}
    for arc_set in reversed(result.sets):
        if arc_set.seal_domain not in wanted or arc_set.recorded("dmarc") != "pass":
            continue
        recorded = arc_set.recorded_from()
        if recorded is None or recorded == from_domain.lower():
            return arc_set
    return None


# Sealing.


class ArcSealer:
    """Add our ARC set to the bytes we deliver (RFC 8617 5.1)."""

    def __init__(self, key: bytes, selector: str, domain: str, authserv_id: str,
                 mode: str = "modified", headers: list[str] | None = None,
                 standardize: bool = False) -> None:
        self.key = key
        self.selector = selector
        self.domain = domain
        self.authserv_id = authserv_id
        self.mode = mode
        self.headers = headers
        # One canonical layout of the signature fields: tags in alphabetical order,
        # no folding (what interoperability suites compare byte for byte).
        self.standardize = standardize

    @classmethod
    def from_settings(cls, settings, authserv_id: str) -> "ArcSealer | None":
        arc = settings.arc
        if not arc.key_file or arc.seal == "never":
            return None
        try:
            key = Path(arc.key_file).read_bytes()
        except OSError as error:
            raise OSError(f"arc.key_file: cannot read {arc.key_file}: {error}") from None
        if b"PRIVATE KEY" not in key:
            raise ValueError(f"arc.key_file: {arc.key_file} is not a PEM private key")
        return cls(key, arc.selector, arc.domain, authserv_id, arc.seal)

    def seal(self, data: bytes, timestamp: int | None = None) -> bytes:
        """seal - the message with our ARC set on top; unchanged if it cannot be sealed."""
        try:
            fields = arc_set(data, self.selector.encode(), self.domain.encode(), self.key,
                             self.authserv_id.encode(), self.headers, timestamp,
                             self.standardize)
        except Exception as error:
            log.warning("ARC sealing failed: %s: %s", type(error).__name__, error)
            return data
        return b"".join(fields) + data

    def render_hook(self, message: "Message", verdict: "Verdict", data: bytes,
                    queue_id: str) -> bytes:
        """render_hook - seal delivered bytes when we changed the message (or always)."""
        if self.mode == "modified" and not _body_changed(message, data):
            return data
        sealed = self.seal(data)
        if sealed is not data:
            log.debug("%s: ARC set added (d=%s s=%s)", queue_id, self.domain, self.selector)
        return sealed


def split_resinfo(value: bytes) -> list[bytes]:
    """split_resinfo - the ';'-separated parts of a value, minding comments and quotes."""
    parts, current, depth, quoted, escaped = [], bytearray(), 0, False, False
    for byte in value:
        char = bytes([byte])
        if escaped:
            escaped = False
        elif char == b"\\":
            escaped = True
        elif quoted:
            quoted = char != b'"'
        elif char == b'"':
            quoted = True
        elif char == b"(":
            depth += 1
        elif char == b")" and depth:
            depth -= 1
        elif char == b";" and not depth:
            parts.append(bytes(current))
            current = bytearray()
            continue
        current.extend(char)
    parts.append(bytes(current))
    return [b" ".join(part.split()) for part in parts]


def own_results(headers: list[tuple[bytes, bytes]], authserv_id: bytes) -> list[bytes]:
    """own_results - every resinfo of our Authentication-Results, comments kept (RFC 8617 4.1.1)."""
    from mailward.auth.results import claimed_id

    found: list[bytes] = []
    for name, value in headers:
        if name.lower() != b"authentication-results":
            continue
        if claimed_id(value) != authserv_id.decode("ascii", "replace").lower():
            continue
        found.extend(part for part in split_resinfo(value)[1:] if part)
    return found


def chain_status(results: list[bytes]) -> bytes:
    """chain_status - cv= for our set, from the arc= result we recorded (RFC 8617 4.1.3)."""
    words = [part.split(b"=", 1)[1].split()[0].lower() for part in results
             if part.lower().startswith(b"arc=") and part[4:].split()]
    if not words:
        return b"none"
    if len(words) > 1 or words[0] not in (b"pass", b"fail", b"none"):
        return b"fail"
    return words[0]


def arc_set(raw: bytes, selector: bytes, domain: bytes, key: bytes, authserv_id: bytes,
            include: list[str] | None = None, timestamp: int | None = None,
            standardize: bool = False) -> list[bytes]:
    """arc_set - the AS, AMS and AAR of our instance, or [] (RFC 8617 5.1).

    The AAR copies our Authentication-Results whole, comments included;
    the AMS signs it and the chosen headers with relaxed canonicalization;
    the AS signs every earlier set (only ours when the chain failed).
    """
    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    message = dkim.ARC(raw, logger=_QUIET, signature_algorithm=b"rsa-sha256")
    private = parse_pem_private_key(key)
    results = own_results(message.headers, authserv_id)
    if not results:
        return []
    cv = chain_status(results)
    newest, existing = message.sorted_arc_headers()
    instance = newest + 1 if existing else 1
    if instance > MAX_INSTANCES or (instance == 1) != (cv == b"none"):
        return []
    chain = [header for _, header in existing] if cv != b"fail" else []
    stamp = str(timestamp or int(time.time())).encode("ascii")
    signed = tuple(h.lower().encode() for h in include) if include else \
        tuple(h.lower() for h in message.default_sign_headers())

    aar = b"i=%d; " % instance + authserv_id + b"".join(b";\r\n " + r for r in results) \
        + b"\r\n"
    chain.insert(0, (b"ARC-Authentication-Results", aar))
    message.headers = relaxed.canonicalize_headers(chain[:1]) + message.headers
    message.hasher = HASH_ALGORITHMS[b"rsa-sha256"]
    body_hash = base64.b64encode(message.hasher(relaxed.canonicalize_body(message.body))
                                 .digest())
    ams = message.gen_header(
        [(b"i", b"%d" % instance), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
         (b"d", domain), (b"s", selector), (b"t", stamp), (b"h", b" : ".join(signed)),
         (b"bh", body_hash), (b"b", b"0" * 60)],
        signed, relaxed, b"ARC-Message-Signature", private, standardize)
    chain.insert(0, (b"ARC-Message-Signature", ams))
    message.headers = relaxed.canonicalize_headers(chain[:1]) + message.headers

    sealed = [name.lower() for name, _ in reversed(chain)]
    if cv == b"fail":
        message.headers.reverse()
    seal = message.gen_header(
        [(b"i", b"%d" % instance), (b"cv", cv), (b"a", b"rsa-sha256"), (b"d", domain),
         (b"s", selector), (b"t", stamp), (b"b", b"0" * 60)],
        sealed, relaxed, b"ARC-Seal", private, standardize)
    return [b"ARC-Seal: " + seal, b"ARC-Message-Signature: " + ams,
            b"ARC-Authentication-Results: " + aar]


def _body_changed(message: "Message", data: bytes) -> bool:
    """_body_changed - the delivered body differs from the received one."""
    original = message.raw[message.root.body_start:]
    separator = data.find(b"\r\n\r\n")
    return separator < 0 or data[separator + 4:] != original


# The check.


def arc_authres(result: ArcResult) -> str:
    """arc_authres - the resinfo of the chain, sealers named in the comment (RFC 8617 4.4)."""
    from mailward.auth.results import method_result

    chain = " ".join(f"i={s.instance} d={s.seal_domain}" for s in result.sets)
    reason = chain if result.cv == "pass" else result.reason
    return method_result("arc", result.cv, reason)


class ArcCheck:
    """Validate the ARC chain; our sealer is registered for delivery."""

    name: ClassVar[str] = "arc"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "ARC_PASS": "the ARC chain of custody validates",
        "ARC_FAIL": "the ARC chain is broken, forged or malformed",
        "ARC_NONE": "the message carries no ARC set",
    }

    def __init__(self, verifier: ArcVerifier, trusted: list[str]) -> None:
        self.verifier = verifier
        self.trusted = trusted

    @classmethod
    def from_services(cls, services) -> "ArcCheck | None":
        from mailward.auth.results import authserv_id

        settings = services.settings
        sealer = ArcSealer.from_settings(settings, authserv_id(settings))
        if sealer is not None:
            hooks = services.extras.setdefault("render_hooks", [])
            hooks.append(sealer.render_hook)
        if not settings.arc.enabled:
            return None
        return cls(ArcVerifier(services.resolver, min_key_bits=settings.dkim.min_key_bits),
                   list(settings.auth.trusted_networks))

    async def check(self, task: Task) -> list[Finding]:
        from mailward.auth import is_trusted_peer

        assert task.message is not None
        if is_trusted_peer(self.trusted, task.envelope.peer_ip):
            return []
        result = await self.verifier.verify(task.message.raw)
        task.scratch["arc"] = result
        symbol = {"pass": "ARC_PASS", "none": "ARC_NONE"}.get(result.cv, "ARC_FAIL")
        chain = " > ".join(f"i={s.instance} {s.seal_domain}" for s in result.sets)
        detail = f"cv={result.cv}: {result.reason}" + (f" ({chain})" if chain else "")
        return [Finding(symbol, Category.AUTH, detail[:500],
                        data={**result.as_dict(), "authres": arc_authres(result)})]
