"""Threat-intelligence feeds: files, STIX 2.1, TAXII 2.1 and MISP into indicators.

Formats read from a file (or the bytes of a download kept on disk):

- text: one indicator per line, its type told from its shape (a URL, a
  SHA-256, an IP or network, ``user@domain`` a sender, ``@domain`` a sender
  domain, else a domain); ``#`` starts a comment;
- CSV: with a header naming ``value`` and optionally ``type``, ``category``,
  ``source``, ``confidence``, ``expires`` and ``comment``; without one, the
  first column is the value;
- JSON: a list of such objects (or ``{"indicators": [...]}``), a STIX 2.1
  bundle, or a MISP event export;
- STIX 2.1 (stix2): every ``indicator`` object whose pattern compares a URL,
  domain, IP, SHA-256 or email address; other object types are skipped and
  counted, revoked and expired indicators are skipped.

SECURITY: a feed is hostile input. A line or object that cannot be read
becomes an error naming its line or object and is skipped; the rest is
kept. Sizes are bounded: ``MAX_FEED_BYTES`` per file, ``MAX_INDICATORS``
per feed, ``MAX_VALUE`` per value.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailward.intel.store import CATEGORIES, TYPES, IndicatorError, NewIndicator, normalize

MAX_FEED_BYTES = 64 * 1024 * 1024
MAX_INDICATORS = 1_000_000
MAX_VALUE = 2048
MAX_ERRORS = 100

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# STIX object paths of the comparisons we understand, and the indicator type each is.
_STIX_PATHS = {
    ("url", "value"): "url",
    ("domain-name", "value"): "domain",
    ("ipv4-addr", "value"): "ip",
    ("ipv6-addr", "value"): "ip",
    ("email-addr", "value"): "sender",
    ("email-message", "from_ref.value"): "sender",
    ("email-message", "sender_ref.value"): "sender",
}
_MISP_TYPES = {"url": "url", "link": "url", "uri": "url", "domain": "domain",
               "hostname": "domain", "ip-src": "ip", "ip-dst": "ip", "sha256": "sha256",
               "email-src": "sender", "email": "sender", "filename|sha256": "sha256",
               "malware-sample": None}


class FeedError(ValueError):
    """A feed that cannot be read at all (not one bad line: the whole thing)."""


@dataclass
class FeedResult:
    """What a feed held: indicators, and what was skipped and why."""

    indicators: list[NewIndicator] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    expired: int = 0
    duplicates: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)
        self.skip("malformed")

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def add(self, item: NewIndicator, where: str) -> None:
        if len(self.indicators) >= MAX_INDICATORS:
            self.skip("over the limit")
            return
        if item.category not in CATEGORIES:
            self.error(f"{where}: unknown category {item.category!r} "
                       f"(one of {', '.join(CATEGORIES)})")
            return
        if len(item.value) > MAX_VALUE:
            self.error(f"{where}: value longer than {MAX_VALUE} characters")
            return
        try:
            item.value = normalize(item.kind, item.value)
        except IndicatorError as problem:
            self.error(f"{where}: {problem}")
            return
        if item.expires_at is not None and item.expires_at <= datetime.now(UTC):
            self.expired += 1
            return
        self.indicators.append(item)

    def dedupe(self) -> None:
        unique: dict[tuple[str, str, str], NewIndicator] = {}
        for item in self.indicators:
            unique[(item.kind, item.value, item.source)] = item
        self.duplicates += len(self.indicators) - len(unique)
        self.indicators = list(unique.values())


def guess_type(value: str) -> str:
    """guess_type - the indicator type a bare value has the shape of."""
    text = value.strip()
    if re.match(r"(?i)https?://", text):
        return "url"
    if _SHA256.fullmatch(text):
        return "sha256"
    try:
        ipaddress.ip_network(text, strict=False)
        return "ip"
    except ValueError:
        pass
    if text.startswith("@"):
        return "sender_domain"
    if "@" in text:
        return "sender"
    return "domain"


def default_category(kind: str) -> str:
    return "malware" if kind == "sha256" else "phish"


def _expiry(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _item(fields: dict[str, Any], source: str, category: str | None) -> NewIndicator:
    value = str(fields.get("value") or fields.get("indicator") or "").strip()
    if not value:
        raise IndicatorError("no value")
    kind = str(fields.get("type") or "").strip().lower() or guess_type(value)
    if kind not in TYPES:
        raise IndicatorError(f"unknown indicator type {kind!r} (one of {', '.join(TYPES)})")
    if kind in ("domain", "sender_domain") and "." not in value.strip(".@"):
        raise IndicatorError(f"{value[:80]!r} has no dot: not a domain name")
    confidence = fields.get("confidence")
    try:
        confidence = 100 if confidence in (None, "") else max(0, min(100, int(confidence)))
    except (TypeError, ValueError):
        raise IndicatorError(f"confidence {confidence!r} is not a number") from None
    try:
        expires = _expiry(str(fields.get("expires") or fields.get("expires_at") or ""))
    except ValueError:
        raise IndicatorError(f"expiry {fields.get('expires')!r} is not an ISO date") from None
    return NewIndicator(kind, value, str(fields.get("source") or source)[:128],
                        str(fields.get("category") or category or default_category(kind)),
                        confidence, expires, str(fields.get("comment") or "")[:1000])


def parse_text(text: str, source: str, category: str | None = None) -> FeedResult:
    result = FeedResult()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        value, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            result.error(f"line {number}: more than one value ({line[:80]!r})")
            continue
        try:
            result.add(_item({"value": value}, source, category), f"line {number}")
        except IndicatorError as problem:
            result.error(f"line {number}: {problem}")
    result.dedupe()
    return result


def parse_csv(text: str, source: str, category: str | None = None) -> FeedResult:
    result = FeedResult()
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for number, row in enumerate(rows, 1):
        if not row or (row[0].lstrip().startswith("#")):
            continue
        cells = [cell.strip() for cell in row]
        if header is None and number == 1 and "value" in [c.lower() for c in cells]:
            header = [c.lower() for c in cells]
            continue
        if header is not None:
            if len(cells) > len(header):
                result.error(f"line {number}: {len(cells)} columns, the header has "
                             f"{len(header)}")
                continue
            fields = dict(zip(header, cells))
        else:
            fields = {"value": cells[0]} if len(cells) == 1 else \
                {"type": cells[0], "value": cells[1]}
        try:
            result.add(_item(fields, source, category), f"line {number}")
        except IndicatorError as problem:
            result.error(f"line {number}: {problem}")
    result.dedupe()
    return result


def parse_json(data: Any, source: str, category: str | None = None) -> FeedResult:
    if isinstance(data, dict) and data.get("type") == "bundle":
        return parse_stix(data, source, category)
    if isinstance(data, dict) and ("Event" in data or "response" in data):
        return parse_misp(data, source, category)
    items = data.get("indicators") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise FeedError("JSON feed: expected a list of indicators, {\"indicators\": [...]}, "
                        "a STIX 2.1 bundle or a MISP event")
    result = FeedResult()
    for number, entry in enumerate(items, 1):
        if isinstance(entry, str):
            entry = {"value": entry}
        if not isinstance(entry, dict):
            result.error(f"item {number}: not an object")
            continue
        try:
            result.add(_item(entry, source, category), f"item {number}")
        except IndicatorError as problem:
            result.error(f"item {number}: {problem}")
    result.dedupe()
    return result


def _stix_category(obj: dict[str, Any], kind: str, fallback: str | None) -> str:
    words = " ".join(str(w) for w in obj.get("indicator_types", []) + obj.get("labels", []))
    words = words.lower()
    if "phish" in words:
        return "phish"
    if "malware" in words or "malicious" in words and kind == "sha256":
        return "malware"
    if "spam" in words:
        return "spam"
    return fallback or default_category(kind)


def _stix_comparisons(pattern: str) -> list[tuple[str, str]]:
    """_stix_comparisons - (indicator type, value) of each equality in a pattern."""
    from stix2patterns.v21.pattern import Pattern

    found = []
    inspection = Pattern(pattern).inspect()
    for object_type, comparisons in inspection.comparisons.items():
        for path, operator, value in comparisons:
            if operator != "=":
                continue
            text = value.strip("'") if isinstance(value, str) else str(value)
            dotted = ".".join(str(p) for p in path)
            if object_type == "file" and dotted.replace("'", "") in ("hashes.SHA-256",
                                                                     "hashes.SHA256"):
                found.append(("sha256", text))
                continue
            kind = _STIX_PATHS.get((object_type, dotted))
            if kind:
                found.append((kind, text))
    return found


def parse_stix(bundle: dict[str, Any], source: str, category: str | None = None) -> FeedResult:
    """parse_stix - the indicators of a STIX 2.1 bundle (RFC-like spec, OASIS STIX 2.1 s4.1)."""
    import stix2
    from stix2.exceptions import STIXError

    result = FeedResult()
    objects = bundle.get("objects")
    if not isinstance(objects, list):
        raise FeedError("STIX bundle without an objects list")
    now = datetime.now(UTC)
    for number, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            result.error(f"object {number}: not an object")
            continue
        if obj.get("type") != "indicator":
            result.skip(f"STIX {str(obj.get('type'))[:40]}")
            continue
        where = f"object {number} ({str(obj.get('id', ''))[:80]})"
        try:
            parsed = stix2.parse(obj, allow_custom=True, version="2.1")
            comparisons = _stix_comparisons(parsed["pattern"])
        except (STIXError, ValueError, KeyError, TypeError) as problem:
            result.error(f"{where}: {str(problem)[:300]}")
            continue
        if parsed.get("revoked"):
            result.skip("revoked")
            continue
        valid_until = parsed.get("valid_until")
        if valid_until is not None and valid_until <= now:
            result.expired += 1
            continue
        if not comparisons:
            result.skip("pattern without a supported comparison")
        for kind, value in comparisons:
            item = NewIndicator(kind, value, source,
                                _stix_category(obj, kind, category),
                                int(parsed.get("confidence", 100) or 100),
                                valid_until, str(parsed.get("name", ""))[:1000])
            result.add(item, where)
    result.dedupe()
    return result


def parse_misp(data: dict[str, Any], source: str, category: str | None = None) -> FeedResult:
    """parse_misp - the to_ids attributes of MISP events (an export or a search answer)."""
    from pymisp import MISPEvent

    result = FeedResult()
    events = data.get("response") if "response" in data else [data]
    if isinstance(events, dict):  # attribute search answer
        return _misp_attributes(events.get("Attribute", []), source, category, result)
    for number, raw in enumerate(events or [], 1):
        event = MISPEvent()
        try:
            event.load(raw)
        except Exception as problem:  # pymisp raises many kinds for a bad event
            result.error(f"event {number}: {str(problem)[:300]}")
            continue
        attributes = list(event.attributes) + [a for o in event.objects for a in o.attributes]
        _misp_attributes([a.to_dict() for a in attributes], source, category, result,
                         f"event {event.get('uuid', number)}")
    result.dedupe()
    return result


def _misp_attributes(attributes: list[dict[str, Any]], source: str, category: str | None,
                     result: FeedResult, where: str = "attribute") -> FeedResult:
    for attribute in attributes:
        if not isinstance(attribute, dict) or not attribute.get("to_ids", False):
            result.skip("MISP not for detection")
            continue
        misp_type = str(attribute.get("type", ""))
        kind = _MISP_TYPES.get(misp_type, "")
        value = str(attribute.get("value", ""))
        if misp_type == "filename|sha256":
            value = value.rpartition("|")[2]
        if not kind:
            result.skip(f"MISP {misp_type[:40]}")
            continue
        result.add(NewIndicator(kind, value, source, category or default_category(kind),
                                100, None, str(attribute.get("comment", ""))[:1000]),
                   f"{where} {attribute.get('uuid', '')}")
    return result


def read_feed(path: Path, source: str | None = None, category: str | None = None,
              fmt: str = "auto") -> FeedResult:
    """read_feed - the indicators of one file, its format told by name or content."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise FeedError(f"{path}: {error.strerror}") from None
    if size > MAX_FEED_BYTES:
        raise FeedError(f"{path}: {size} bytes, more than the {MAX_FEED_BYTES} a feed may be")
    text = path.read_bytes().decode("utf-8", "replace")
    source = source or path.stem[:128]
    if fmt == "auto":
        suffix = path.suffix.lower()
        stripped = text.lstrip()
        fmt = ("json" if suffix in (".json", ".stix") or stripped.startswith(("{", "["))
               else "csv" if suffix == ".csv" else "text")
    if fmt in ("json", "stix", "misp"):
        try:
            data = json.loads(text)
        except ValueError as error:
            raise FeedError(f"{path}: not valid JSON: {error}") from None
        if fmt == "stix":
            return parse_stix(data, source, category)
        if fmt == "misp":
            return parse_misp(data, source, category)
        return parse_json(data, source, category)
    if fmt == "csv":
        return parse_csv(text, source, category)
    if fmt == "text":
        return parse_text(text, source, category)
    raise FeedError(f"unknown feed format {fmt!r} (auto, text, csv, json, stix, misp)")
