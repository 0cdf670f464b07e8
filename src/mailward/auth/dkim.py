"""DKIM (RFC 6376, 8301, 8463): which domains signed this message?

Every DKIM-Signature is verified with dkimpy. dkimpy is synchronous, so its
DNS never runs: the selector keys are fetched first through the shared
asynchronous resolver, checked here against RFC 6376 3.6.1 (version, key
type, hash and service restrictions, the ``t=s`` flag, revoked keys), and
dkimpy is then handed a look-up function that answers from what was
fetched, in a worker thread so that hashing a large body does not stall the
event loop.

SECURITY: signatures and key records are hostile input. A signature with
``l=`` shorter than the body protects only its start: such a pass is
reported as partial and never counts as a pass for DMARC or allow lists,
since anyone may append text after it. rsa-sha1 and RSA keys under 1024 bits
are not valid (RFC 8301). Garbage tags, keys that do not parse, and 8-bit
header bytes give a result (permerror, fail) and a finding, never an
exception; at most ``[dkim] max_signatures`` signatures are verified.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import quopri
import re
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import dkim
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError
from dkim.crypto import parse_public_key
from dkim.util import InvalidTagValueList, parse_tag_value

from mailward.auth.dns import DnsError, Resolver
from mailward.mime import first_of
from mailward.pipeline import INLINE_BYTES, Stage, Task
from mailward.verdict import Category, Finding

log = logging.getLogger("mailward.auth")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The outcome of fetching one selector's key: the text, or why there is none."""

    text: str | None
    error: str = ""
    temporary: bool = False


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """The outcome of one DKIM-Signature (RFC 8601 2.7.1 result words)."""

    result: str
    domain: str
    selector: str
    algorithm: str
    reason: str
    identity: str = ""
    header_b: str = ""
    partial: bool = False
    weak: bool = False

    @property
    def counts_for_dmarc(self) -> bool:
        """counts_for_dmarc - a full, strong, verified signature (RFC 7489 4.2)."""
        return self.result == "pass"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def signature_tags(value: bytes) -> dict[bytes, bytes] | None:
    """signature_tags - the tag list of a signature or key record, or None (RFC 6376 3.2)."""
    try:
        return parse_tag_value(value)
    except (InvalidTagValueList, ValueError, IndexError):
        return None


def _header_block(raw: bytes) -> bytes:
    """_header_block - raw up to its first empty line as dkimpy splits lines (on \\r?\\n)."""
    if raw.startswith((b"\n", b"\r\n")):
        return raw[:raw.index(b"\n") + 1]
    end = first_of(raw, (b"\n\r\n", b"\n\n"))
    if end < 0:
        return raw
    return raw[:end + (2 if raw[end + 1:end + 2] == b"\n" else 3)]


def signature_headers(raw: bytes, name: bytes = b"dkim-signature") -> list[bytes]:
    """signature_headers - the values of every header field of this name, in order."""
    return header_fields(raw, (name,))[name]


def header_fields(raw: bytes, names: tuple[bytes, ...]) -> dict[bytes, list[bytes]]:
    """header_fields - for each (lower-case) name, the values of its fields, in order.

    dkimpy reads the header up to the first empty line, so only that much is
    handed to it, once, and only when one of the names occurs in it at all.
    A header dkimpy cannot read has no fields.
    """
    found: dict[bytes, list[bytes]] = {name: [] for name in names}
    header = _header_block(raw)
    lowered = header.lower()
    if not any(name in lowered for name in names):
        return found
    try:
        headers, _ = dkim.rfc822_parse(header)
    except Exception:
        return found
    for field, value in headers:
        values = found.get(field.lower())
        if values is not None:
            values.append(value)
    return found


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace").strip()


def key_name(tags: dict[bytes, bytes]) -> str | None:
    """key_name - <selector>._domainkey.<domain> of a signature (RFC 6376 3.6.2.1)."""
    selector, domain = _text(tags.get(b"s")), _text(tags.get(b"d"))
    if not selector or not domain:
        return None
    name = f"{selector}._domainkey.{domain}".lower().rstrip(".")
    if not name.isascii() or len(name) > 253:
        return None
    return name


async def fetch_keys(resolver: Resolver, names: set[str]) -> dict[str, KeyRecord]:
    """fetch_keys - the TXT key record of each name, fetched concurrently."""

    async def one(name: str) -> tuple[str, KeyRecord]:
        try:
            texts = await resolver.txt(name)
        except DnsError as error:
            return name, KeyRecord(None, f"key look-up of {name}: {error.kind}",
                                   temporary=not error.is_void and error.kind != "badname")
        if not texts:
            return name, KeyRecord(None, f"no key record at {name}")
        return name, KeyRecord(texts[0])

    return dict(await asyncio.gather(*(one(name) for name in sorted(names))))


class KeyRecordError(Exception):
    """A key record that cannot be used for a signature; the text says why."""


def check_key(record: str, sig: dict[bytes, bytes], *, granularity: bool = False) -> bytes:
    """check_key - the usable key record for this signature, or KeyRecordError (RFC 6376 3.6.1).

    What comes back holds only the tags dkimpy needs (v, k, p), so that
    dkimpy never judges tags it reads differently from RFC 6376.
    """
    tags = signature_tags(record.encode("utf-8", "replace"))
    if tags is None:
        raise KeyRecordError("key record has a syntax error")
    if b"v" in tags and tags[b"v"] != b"DKIM1":
        raise KeyRecordError(f"key record version {_text(tags[b'v'])!r} is not DKIM1")
    if tags.get(b"k", b"rsa") not in (b"rsa", b"ed25519"):
        raise KeyRecordError(f"key type {_text(tags.get(b'k'))!r} is not supported")
    if not tags.get(b"p", b"").strip():
        raise KeyRecordError("key is revoked (empty p=)")
    algorithm = sig.get(b"a", b"")
    hash_name = algorithm.rpartition(b"-")[2]
    if b"h" in tags:
        allowed = [h.strip() for h in tags[b"h"].split(b":")]
        if hash_name not in allowed:
            raise KeyRecordError(f"key allows only hashes {_text(tags[b'h'])}")
    if b"s" in tags:
        services = [s.strip() for s in tags[b"s"].split(b":")]
        if b"*" not in services and b"email" not in services:
            raise KeyRecordError(f"key is for services {_text(tags[b's'])}, not email")
    flags = [f.strip() for f in tags.get(b"t", b"").split(b":")]
    domain = sig.get(b"d", b"").lower()
    identity = decode_identity(sig.get(b"i", b"@" + domain)).lower()
    if b"s" in flags and identity.rpartition(b"@")[2] != domain:
        raise KeyRecordError("key has t=s but i= is a subdomain of d=")
    if granularity:
        _check_granularity(tags, decode_identity(sig.get(b"i", b"@" + domain)))
    key_type = tags.get(b"k", b"rsa")
    _parse_key(key_type, tags[b"p"])
    return b"v=DKIM1; k=" + key_type + b"; p=" + re.sub(rb"\s+", b"", tags[b"p"])


def _parse_key(key_type: bytes, value: bytes) -> None:
    """_parse_key - raise KeyRecordError unless p= holds a key of that type."""
    try:
        data = base64.b64decode(re.sub(rb"\s+", b"", value), validate=True)
    except (binascii.Error, ValueError):
        raise KeyRecordError("p= is not base64") from None
    if key_type == b"ed25519":
        if len(data) != 32:
            raise KeyRecordError(f"ed25519 key of {len(data)} bytes, not 32")
        return
    try:
        parse_public_key(data)
    except Exception:
        raise KeyRecordError("p= does not hold an RSA public key") from None


def _check_granularity(tags: dict[bytes, bytes], identity: bytes) -> None:
    """_check_granularity - the RFC 4871 g= local-part pattern (dropped by RFC 6376)."""
    if b"g" not in tags:
        return
    pattern = tags[b"g"].strip()
    local = identity.rpartition(b"@")[0]
    if not pattern:
        raise KeyRecordError("key has an empty g=, which matches no address")
    regex = b"".join(b".*" if c == ord("*") else re.escape(bytes([c])) for c in pattern)
    if not re.fullmatch(regex, local):
        raise KeyRecordError(f"key g={_text(pattern)!r} does not match i= local part")


def decode_identity(value: bytes) -> bytes:
    """decode_identity - i= is dkim-quoted-printable (RFC 6376 2.11, 3.5)."""
    return quopri.decodestring(re.sub(rb"\s+", b"", value)) if b"=" in value else value


class _Message(dkim.DKIM):
    """dkimpy's verifier, with the signature checked as RFC 6376 reads it.

    q= is a list of methods, one of which must be dns/txt, and i= is
    quoted-printable (RFC 6376 3.5); dkimpy takes both literally.
    """

    def verify_headerprep(self, idx: int = 0):  # type: ignore[override]
        sigheaders = [(x, y) for x, y in self.headers if x.lower() == b"dkim-signature"]
        if len(sigheaders) <= idx:
            return False
        try:
            sig = parse_tag_value(sigheaders[idx][1])
        except InvalidTagValueList as error:
            raise dkim.MessageFormatError(error)
        self.signature_fields = sig
        checked = dict(sig)
        if b"q" in sig:
            methods = [m.strip() for m in sig[b"q"].split(b":")]
            if b"dns/txt" not in methods:
                raise dkim.ValidationError(f"q= lists no supported method ({sig[b'q']!r})")
            checked[b"q"] = b"dns/txt"
        if b"i" in sig:
            checked[b"i"] = decode_identity(sig[b"i"])
        dkim.validate_signature_fields(checked)
        self.domain = sig[b"d"]
        self.selector = sig[b"s"]
        include_headers = [x.lower() for x in re.split(rb"\s*:\s*", sig[b"h"])]
        self.include_headers = tuple(include_headers)
        return sig, include_headers, sigheaders


def _body_length(message: dkim.DKIM, sig: dict[bytes, bytes]) -> int | None:
    try:
        policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
    except InvalidCanonicalizationPolicyError:
        return None
    return len(policy.canonicalize_body(message.body))


class DkimVerifier:
    """Verify every DKIM signature of a message through our resolver."""

    def __init__(self, resolver: Resolver, *, min_key_bits: int = 1024,
                 accept_sha1: bool = False, max_signatures: int = 10,
                 rfc4871_granularity: bool = False) -> None:
        self.resolver = resolver
        self.min_key_bits = min_key_bits
        self.accept_sha1 = accept_sha1
        self.max_signatures = max_signatures
        self.granularity = rfc4871_granularity

    async def verify(self, raw: bytes) -> list[SignatureResult]:
        """verify - one result per signature, topmost first; [] when unsigned."""
        values = signature_headers(raw)[:self.max_signatures]
        if not values:
            return []
        parsed = [signature_tags(value) for value in values]
        names = {name for tags in parsed if tags for name in [key_name(tags)] if name}
        keys = await fetch_keys(self.resolver, names)
        if len(raw) <= INLINE_BYTES or not any(key.text is not None for key in keys.values()):
            # A small message is verified on the loop, which it holds for about half
            # a millisecond (dkimpy, 8 KB, RSA-2048), sparing the hand-off to a
            # thread; with no key to verify with there is nothing to hash at all.
            return self._verify_all(raw, parsed, keys)
        return await asyncio.to_thread(self._verify_all, raw, parsed, keys)

    def _verify_all(self, raw: bytes, parsed: list[dict[bytes, bytes] | None],
                    keys: dict[str, KeyRecord]) -> list[SignatureResult]:
        made: list[dkim.DKIM] = []

        def message() -> dkim.DKIM:  # parsed for dkimpy once, when a key asks for it
            if not made:
                made.append(_Message(raw, minkey=0, logger=_QUIET))
            return made[0]

        return [self._verify_one(message, index, tags, keys)
                for index, tags in enumerate(parsed)]

    def _verify_one(self, message: Callable[[], dkim.DKIM], index: int,
                    tags: dict[bytes, bytes] | None,
                    keys: dict[str, KeyRecord]) -> SignatureResult:
        """_verify_one - the result of signature number index (RFC 6376 6.1)."""
        if tags is None:
            return SignatureResult("permerror", "", "", "", "signature has a syntax error")
        base = dict(domain=_text(tags.get(b"d")).lower(), selector=_text(tags.get(b"s")),
                    algorithm=_text(tags.get(b"a")), identity=_text(tags.get(b"i")),
                    header_b=re.sub(r"\s+", "", _text(tags.get(b"b")))[:12])
        name = key_name(tags)
        if name is None:
            return SignatureResult("permerror", reason="signature lacks d= or s=", **base)
        key = keys.get(name, KeyRecord(None, f"no key record at {name}"))
        if key.text is None:
            return SignatureResult("temperror" if key.temporary else "permerror",
                                   reason=key.error, **base)
        try:
            answer = check_key(key.text, tags, granularity=self.granularity)
        except KeyRecordError as error:
            return SignatureResult("permerror", reason=f"{name}: {error}", **base)
        return self._crypto(message(), index, tags, answer, base)

    def _crypto(self, message: dkim.DKIM, index: int, tags: dict[bytes, bytes],
                answer: bytes, base: dict[str, str]) -> SignatureResult:
        """_crypto - dkimpy's verification, then RFC 8301 and the l= rule."""
        try:
            valid = message.verify(index, dnsfunc=lambda *_a, **_k: answer)
        except dkim.ValidationError as error:
            text = str(error)
            word = "fail" if "body hash mismatch" in text else "permerror"
            return SignatureResult(word, reason=text[:200], **base)
        except (dkim.DKIMException, ValueError, TypeError, IndexError, KeyError,
                binascii.Error) as error:
            return SignatureResult("permerror", reason=f"{type(error).__name__}: "
                                   f"{str(error)[:200]}", **base)
        if not valid:
            return SignatureResult("fail", reason="signature does not verify", **base)
        if tags.get(b"a") == b"rsa-sha1" and not self.accept_sha1:
            return SignatureResult("fail", reason="rsa-sha1 is not accepted (RFC 8301)",
                                   weak=True, **base)
        bits = getattr(message, "keysize", 0) or 0
        if getattr(message, "ktag", b"") == b"rsa" and bits < self.min_key_bits:
            return SignatureResult("fail", reason=f"RSA key of {bits} bits is too short "
                                   "(RFC 8301)", weak=True, **base)
        if b"l" in tags:
            length = _body_length(message, tags)
            if length is not None and int(tags[b"l"]) < length:
                return SignatureResult(
                    "policy", reason=f"l={int(tags[b'l'])} signs only part of the "
                    f"{length}-byte body", partial=True, **base)
        return SignatureResult("pass", reason="signature verified", **base)


class _Quiet(logging.Logger):
    """dkimpy logs every verification failure at error level; we report them ourselves."""

    def __init__(self) -> None:
        super().__init__("mailward.auth.dkimpy", logging.CRITICAL + 1)


_QUIET = _Quiet()


# The check.

_SYMBOLS = {
    "DKIM_PASS": "a DKIM signature covering the whole message verified",
    "DKIM_PARTIAL": "a DKIM signature verified but its l= leaves part of the body unsigned",
    "DKIM_FAIL": "a DKIM signature did not verify (the message was changed or forged)",
    "DKIM_WEAK": "a DKIM signature uses rsa-sha1 or a key too short to trust (RFC 8301)",
    "DKIM_INVALID": "a DKIM signature or its key record is malformed, revoked or unusable",
    "DKIM_TEMPERROR": "a DKIM key could not be fetched (DNS failure)",
    "DKIM_NONE": "the message carries no DKIM signature",
}


def symbol_of(result: SignatureResult) -> str:
    """symbol_of - the finding symbol for one signature's result."""
    if result.partial:
        return "DKIM_PARTIAL"
    if result.weak:
        return "DKIM_WEAK"
    return {"pass": "DKIM_PASS", "fail": "DKIM_FAIL", "temperror": "DKIM_TEMPERROR"}.get(
        result.result, "DKIM_INVALID")


def dkim_authres(result: SignatureResult) -> str:
    """dkim_authres - the resinfo of one signature (RFC 8601 2.7.1, RFC 6008)."""
    from mailward.auth.results import method_result

    return method_result("dkim", result.result, result.reason,
                         [("header.d", result.domain), ("header.s", result.selector),
                          ("header.a", result.algorithm), ("header.b", result.header_b)])


class DkimCheck:
    """Verify the message's DKIM signatures."""

    name: ClassVar[str] = "dkim"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = _SYMBOLS

    def __init__(self, verifier: DkimVerifier, trusted: list[str]) -> None:
        self.verifier = verifier
        self.trusted = trusted

    @classmethod
    def from_services(cls, services) -> "DkimCheck | None":
        settings = services.settings
        if not settings.dkim.enabled:
            return None
        verifier = DkimVerifier(services.resolver, min_key_bits=settings.dkim.min_key_bits,
                                accept_sha1=settings.dkim.accept_sha1,
                                max_signatures=settings.dkim.max_signatures)
        return cls(verifier, list(settings.auth.trusted_networks))

    async def check(self, task: Task) -> list[Finding]:
        from mailward.auth import is_trusted_peer

        assert task.message is not None
        if is_trusted_peer(self.trusted, task.envelope.peer_ip):
            return []
        results = await self.verifier.verify(task.message.raw)
        task.scratch["dkim"] = results
        if not results:
            return [Finding("DKIM_NONE", Category.AUTH, "no DKIM-Signature header",
                            data={"authres": "dkim=none", "signatures": []})]
        grouped: dict[str, list[SignatureResult]] = {}
        for result in results:
            grouped.setdefault(symbol_of(result), []).append(result)
        findings = []
        for symbol, items in grouped.items():
            detail = "; ".join(f"d={r.domain} s={r.selector}: {r.reason}" for r in items)
            findings.append(Finding(symbol, Category.AUTH, detail[:500], data={
                "signatures": [r.as_dict() for r in items],
                "authres": [dkim_authres(r) for r in items]}))
        return findings
