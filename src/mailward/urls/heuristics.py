"""What a URL's form says about it, without fetching it.

The tests here look only at the URL: an IP-literal host, a punycode or
mixed-script host, a host that looks like a protected domain or a known
brand (UTS #39 confusable skeletons, digits for letters, one edit), a
brand's name on a domain the brand does not own, userinfo before the host,
link shorteners, free hosting and form services, too many subdomains, a
very long URL, and anchor text that names another domain than the link
goes to. The lists (brands, services, scanner user agents) are shipped in
``data/lists.toml`` and replaceable by the site.

They are used before delivery (``urls.reputation``) and again at click time
(``urls.click``).
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from confusable_homoglyphs import categories, confusables
from publicsuffixlist import PublicSuffixList

from mailward.config import ConfigError

_PSL = PublicSuffixList()
_MIN_LABEL = 4  # shorter names (t.co, g.co, x.com) have too many innocent twins
_ASCII_CONFUSIONS = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("0", "o"), ("1", "l"),
                     ("3", "e"), ("5", "s"), ("i", "l"), ("_", "-"))
_DOMAIN_IN_TEXT = re.compile(r"(?i)(?<![\w@.-])((?:[a-z0-9\u00a1-\uffff](?:[a-z0-9\u00a1-\uffff-]"
                             r"{0,61}[a-z0-9\u00a1-\uffff])?\.){1,8}[a-z\u00a1-\uffff]{2,24})"
                             r"(?![\w-]|\.[a-z0-9])")


@dataclass(slots=True)
class Lists:
    """Brands with their domains, and the hosted services that phishers use."""

    brands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shorteners: tuple[str, ...] = ()
    free_hosting: tuple[str, ...] = ()
    form_services: tuple[str, ...] = ()
    scanner_agents: tuple[str, ...] = ()


def _lists_from(data: dict, source: str) -> Lists:
    """_lists_from - validated lists from parsed TOML; errors name the key."""
    brands = {}
    for name, table in data.get("brands", {}).items():
        domains = table.get("domains") if isinstance(table, dict) else None
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise ConfigError(f"{source}: brands.{name}.domains must be a list of domains")
        brands[name.lower()] = tuple(d.lower() for d in domains)
    services = data.get("services", {})
    lists = Lists(brands=brands)
    for key in ("shorteners", "free_hosting", "form_services", "scanner_agents"):
        value = services.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: services.{key} must be a list of strings")
        setattr(lists, key, tuple(v if key == "scanner_agents" else v.lower() for v in value))
    for pattern in lists.scanner_agents:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"{source}: services.scanner_agents: {pattern!r}: {error}") from None
    return lists


def load_lists(path: str = "") -> Lists:
    """load_lists - the shipped lists, with the tables of a site file over them."""
    shipped = resources.files("mailward.urls").joinpath("data/lists.toml").read_text("utf-8")
    data = tomllib.loads(shipped)
    if path:
        try:
            site = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"urls.lists_file: {path} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"urls.lists_file: {path} is not valid TOML: {error}") from None
        if "brands" in site:
            data["brands"] = site["brands"]
        data.setdefault("services", {}).update(site.get("services", {}))
        return _lists_from(data, path)
    return _lists_from(data, "lists.toml (shipped)")


# Domains.


@lru_cache(maxsize=16384)  # bounded: the hosts come from hostile mail
def registrable(host: str) -> str:
    """registrable - the registrable domain (public suffix plus one label) of a host."""
    host = host.lower().rstrip(".")
    return _PSL.privatesuffix(host) or host


def subdomain_count(host: str) -> int:
    """subdomain_count - labels left of the registrable domain."""
    domain = registrable(host)
    rest = host[:-len(domain)].rstrip(".") if host.endswith(domain) else ""
    return len(rest.split(".")) if rest else 0


def to_unicode(host: str) -> str:
    """to_unicode - a host's U-labels, as a reader would see it (invalid stay A-labels)."""
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except UnicodeError:
                pass
        labels.append(label)
    return ".".join(labels)


def is_mixed_script(label: str) -> bool:
    """is_mixed_script - letters of more than one script in one label (UTS #39 5.1)."""
    letters = "".join(ch for ch in label if ch.isalpha())
    scripts = categories.unique_aliases(letters) - {"COMMON", "INHERITED"} if letters else set()
    return len(scripts) > 1


@lru_cache(maxsize=65536)
def skeleton(text: str) -> str:
    """skeleton - a form in which confusable spellings of a name are equal (UTS #39 4)."""
    text = unicodedata.normalize("NFKC", text.lower())
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        found = confusables.is_confusable(ch, preferred_aliases=["latin", "common"])
        latin = ""
        if found:
            latin = next((h["c"] for h in found[0]["homoglyphs"] if h["c"].isascii()), "")
        out.append(latin or ch)
    folded = "".join(out)
    for source, target in _ASCII_CONFUSIONS:
        folded = folded.replace(source, target)
    return folded


def _one_edit(a: str, b: str) -> bool:
    """_one_edit - a and b differ by one insertion, deletion, substitution or swap.

    A substitution of the first letter does not count: a reader anchors a
    word on its first letter, so ``lindows`` or ``bstatic`` never passes for
    ``windows`` or ``gstatic`` (a first letter that only looks alike, ``rn``
    for ``m`` or ``1`` for ``l``, is the skeleton's to catch).
    """
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if diff == [0]:
            return False
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _label(domain: str) -> str:
    """_label - the registrable label of a domain (``paypal`` of ``paypal.co.uk``)."""
    suffix = _PSL.publicsuffix(domain) or ""
    head = domain[:-len(suffix)].rstrip(".") if suffix and domain.endswith(suffix) else domain
    return head.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class Lookalike:
    target: str     # the protected or brand domain it looks like
    how: str        # homoglyphs, one edit, brand name


class Protected:
    """The domains whose lookalikes are flagged: the site's own and the brands'."""

    def __init__(self, own: list[str], lists: Lists) -> None:
        self.owners: dict[str, str] = {}
        for name, domains in lists.brands.items():
            for domain in domains:
                self.owners.setdefault(registrable(domain), name)
        for domain in own:
            self.owners[registrable(domain.lower())] = f"own:{domain}"
        self.by_skeleton: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        for domain in self.owners:
            label = _label(domain)
            if len(label) < _MIN_LABEL:
                continue
            self.by_skeleton.setdefault(skeleton(label), domain)
            self.labels.setdefault(label, domain)
        self.brand_names = {name: domains for name, domains in lists.brands.items()
                            if len(name) >= 4}

    def owned(self, host: str) -> bool:
        """owned - the host belongs to a protected domain or brand."""
        return registrable(host) in self.owners

    @lru_cache(maxsize=16384)
    def lookalike(self, host: str) -> Lookalike | None:
        """lookalike - the protected domain this host imitates, or None."""
        domain = registrable(host)
        if domain in self.owners:
            return None
        label = _label(to_unicode(domain))
        if len(label) < _MIN_LABEL:
            return None
        twin = self.by_skeleton.get(skeleton(label))
        if twin and twin != domain and label != _label(twin):
            return Lookalike(twin, "homoglyphs" if not label.isascii() else "look-alike letters")
        if len(label) >= 6 and label.isascii():
            for known, known_domain in self.labels.items():
                if len(known) >= 6 and _one_edit(label, known):
                    return Lookalike(known_domain, "one letter changed")
        tokens = set(re.split(r"[.-]", to_unicode(host).lower()))
        for name, domains in self.brand_names.items():
            if name in tokens:
                return Lookalike(domains[0], f"brand name {name} on a domain it does not own")
        return None


@lru_cache(maxsize=32)
def _service_index(entries: tuple[str, ...]) -> dict[str, list[tuple[int, str | None]]]:
    """_service_index - entry host -> (position in the list, "/path-prefix" or None)."""
    index: dict[str, list[tuple[int, str | None]]] = {}
    for order, entry in enumerate(entries):
        entry_host, slash, prefix = entry.partition("/")
        index.setdefault(entry_host, []).append((order, "/" + prefix if slash else None))
    return index


def matches_service(host: str, path: str, entries: tuple[str, ...]) -> str | None:
    """matches_service - the list entry (host, or host/path-prefix) this URL falls under.

    The first entry in the list's order whose host is the URL's host or a
    parent of it, looked up by each of the host's parents in turn.
    """
    host = host.lower()
    entries = tuple(entries)
    index = _service_index(entries)
    best: int | None = None
    suffix, start = host, 0
    while True:
        for order, prefix in index.get(suffix, ()):
            if best is not None and order >= best:
                break
            if prefix is None or path.lower().startswith(prefix):
                best = order
                break
        dot = host.find(".", start)
        if dot < 0:
            break
        start = dot + 1
        suffix = host[start:]
    return entries[best] if best is not None else None


def domains_in_text(text: str) -> list[str]:
    """domains_in_text - host names a reader sees in a link's text, as A-labels.

    A URL with a scheme names its host; a bare name counts only when it ends
    in a real top-level domain (so ``report.pdf`` is not a domain).
    """
    from mailward.urls.extract import is_tld, text_candidates
    from mailward.urls.normalize import host_to_ascii, url_host

    text = text[:1000]
    found = [url_host(c.raw) for c in text_candidates(text) if not c.where.endswith("no-scheme")]
    for match in _DOMAIN_IN_TEXT.finditer(text):
        ascii_name = host_to_ascii(match.group(1).rstrip("."))
        if ascii_name and is_tld(ascii_name.rsplit(".", 1)[-1]):
            found.append(ascii_name)
    return [name for name in found if name]


def anchor_mismatch(text: str, host: str) -> str | None:
    """anchor_mismatch - a domain named in the anchor text that the link does not go to."""
    target = registrable(host)
    for shown in domains_in_text(text):
        if registrable(shown) != target:
            return shown
    return None
