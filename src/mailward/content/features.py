"""What the content classifiers see of a message: strings to hash.

The spam model and the language model read a message as a bag of short
strings, each hashed into a fixed-size weight vector (so no vocabulary is
stored). The strings are:

- words and word pairs of the subject and of the text a reader sees (HTML
  rendered to text, NFKC-normalised, zero-width characters removed);
- character 4-grams of each distinct word, which survive the letter swaps
  and inserted digits of obfuscated spam;
- header features: which headers are present, the mailer, the shape of the
  From, Reply-To and Message-ID, the number of Received hops, and the words
  of the headers that tell the sender's path, less the hops the site's own
  servers added (``internal_hops``);
- structure: MIME types, charsets, attachments, link counts, length;
- the findings of the checks that ran before and that a message alone
  decides (``f:`` strings): structure, hidden text, language cues, the URL
  heuristics and the static attachment analysis, never intelligence
  look-ups, sandbox verdicts or the gateway's memory of domains.

Each string belongs to a group by its prefix (``token_group``): the words
and word pairs of the text, the subject, header presence and shape, header
values, HTML, structure, findings, and the text's character n-grams. The model weights groups against each other
(``GROUP_WEIGHTS``, chosen by cross-validation on the training corpus).

SECURITY: the input is hostile. Only a bounded prefix of the text is read
(``MAX_TEXT`` characters; ``text_was_cut`` says when more was there), the
count of distinct words whose n-grams are taken is bounded, and header
values are cut before use, so a message costs at most a fixed amount of
work whatever its size.
"""

from __future__ import annotations

import re
from typing import Iterable

from mailward.message import Message
from mailward.verdict import Finding

MAX_TEXT = 30_000
MAX_NGRAM_WORDS = 1_500
NGRAM = 4
# The n-grams of words already seen, bounded: emptied when full.
_GRAMS: dict[str, list[str]] = {}
_GRAMS_MAX = 100_000
_WORD = re.compile(r"[^\W\d_][\w'$€£%-]{0,29}|\d[\d.,]*\d|[$€£]\d+|[!?]{2,}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_MSGID = re.compile(r"<([^@<>]{1,200})@([^@<>]{1,200})>")
# Headers a sender or an earlier filter may add to look judged already, and
# those a mailbox adds after delivery (a gateway never sees them, a corpus of
# delivered mail always does); never features.
_IGNORED_HEADERS = ("x-spam", "x-mailward", "x-virus", "authentication-results",
                    "status", "x-status", "x-keywords", "x-uid", "x-mozilla-",
                    "delivered-to", "x-original-to", "lines", "content-length",
                    "x-evolution", "x-imap", "x-gmail-", "x-pop3-rcpt", "x-filter")
# Findings whose symbols are features: families a message alone decides,
# the same at training time (``spam.content_findings``) as on the wire.
FINDING_FAMILIES = ("HDR_", "MIME_", "LANG_", "CONTENT_", "URL_", "ATTACH_")
# Not features: other classifiers' verdicts (trained apart), what depends on
# intelligence, the site's brand list, the sandbox, the clock or the gateway's memory (not the same
# at training time), and the per-file listing (``at:`` strings say it).
NOT_FEATURES = frozenset({
    "LANG_EMBED_PHISH",
    "LANG_PHISH_MODEL", "LANG_BRAND_IMPERSONATION", "URL_BLOCKLISTED", "URL_DOMAIN_BLOCKLISTED", "URL_IP_BLOCKLISTED",
    "URL_NEW_DOMAIN", "ATTACH_FILE", "ATTACH_ANALYSIS_INCOMPLETE", "ATTACH_SANDBOX_PENDING",
    "ATTACH_SANDBOX_MALICIOUS", "ATTACH_SANDBOX_SUSPICIOUS", "ATTACH_SANDBOX_CLEAN",
    "ATTACH_SANDBOX_ERROR", "ATTACH_SANDBOX_TIMEOUT"})

# Groups of strings, by prefix; a string without a known prefix is text.
GROUPS = ("text", "subject", "headers", "header_values", "html", "structure", "findings",
          "ngrams")
GROUP_WEIGHTS = (1.5, 0.7, 1.0, 2.0, 0.4, 0.4, 0.5, 0.5)
# What a person's judgement teaches (``learn``): what the message says, links
# to and carries, not the header shapes and relay words that every message on
# the same path shares (teaching those moves all of that path's mail at once).
LEARNT_GROUPS = frozenset({0, 1, 4, 5, 6, 7})
_PREFIX_GROUP = {"s": 1, "hn": 2, "hx": 2, "hr": 2, "hf": 2, "hm": 2, "hd": 2, "hs": 2,
                 "hc": 2, "hv": 3, "ht": 4, "ha": 4, "ct": 5, "pt": 5, "cs": 5, "st": 5,
                 "u": 5, "at": 5, "d": 5, "f": 6, "g": 7}


def token_group(token: str) -> int:
    """token_group - the index in GROUPS of a feature string, by its prefix."""
    head, colon, _ = token.partition(":")
    return _PREFIX_GROUP.get(head, 0) if colon else 0


def _bucket(value: int) -> str:
    return str(min(max(value, 0).bit_length(), 10))


def _domain_tail(domain: str) -> str:
    return ".".join(domain.lower().split(".")[-2:])


def text_was_cut(message: Message) -> bool:
    """text_was_cut - the classifiers read only a prefix of this text."""
    return len(message.text) > MAX_TEXT


def _grams(key: str, word: str) -> list[str]:
    """_grams - the character n-grams of one word, remembered (words recur)."""
    grams = _GRAMS.get(key)
    if grams is None:
        padded = f" {word} "
        head = key[:len(key) - len(word)] + "g:"
        grams = [head + padded[i:i + NGRAM] for i in range(len(padded) - NGRAM + 1)]
        if len(_GRAMS) >= _GRAMS_MAX:
            _GRAMS.clear()
        _GRAMS[key] = grams
    return grams


def text_parts(text: str, prefix: str = "") -> tuple[list[str], list[str]]:
    """text_parts - (words and word pairs, character n-grams) of a text."""
    words = _WORD.findall(text[:MAX_TEXT].lower())
    found = [prefix + w for w in words] if prefix else list(words)
    pair = prefix + "b:"
    found.extend([f"{pair}{a}_{b}" for a, b in zip(words, words[1:])])
    distinct = [w for w in dict.fromkeys(words) if len(w) > NGRAM][:MAX_NGRAM_WORDS]
    known = _GRAMS.get
    grams: list[str] = []
    for word in distinct:
        key = prefix + word if prefix else word
        cached = known(key)
        grams.extend(_grams(key, word) if cached is None else cached)
    return found, grams


def text_tokens(text: str, prefix: str = "") -> list[str]:
    """text_tokens - words, word pairs and character n-grams of a text."""
    found, grams = text_parts(text, prefix)
    found.extend(grams)
    return found


_BY_HOST = re.compile(r"\bby\s+\[?([a-z0-9][a-z0-9.:_-]{0,253})\]?(\s+\(mailward\))?")


def _internal(host: str, hosts: Iterable[str]) -> bool:
    return any(host == name or host.endswith("." + name) for name in hosts)


def internal_hops(message: Message, hosts: Iterable[str] = ()) -> int:
    """internal_hops - how many Received headers at the top the receiving side added.

    A hop is the site's own when its ``by`` host is one of ``hosts`` (names or
    domains, ``spam.internal_hosts``) or mailward's own trace header; counting
    stops at the first hop that is not. Those hops say how the site's mail
    reached its mailboxes, never where it came from: on the wire mailward's
    own is on every message, and in a corpus of delivered mail the
    collector's relays and mailbox servers are, different for each folder
    the corpus was gathered from. A model that read them would learn how its
    training mail was collected.
    """
    hosts = tuple(name.lower().strip(".") for name in hosts)
    count = 0
    for name, value in message.raw_headers[:100]:
        if name.lower() != "received":
            continue
        by = _BY_HOST.search(value[:1000].lower())
        if by is None or not (by.group(2) or _internal(by.group(1).rstrip("."), hosts)):
            break
        count += 1
    return count


def header_tokens(message: Message, internal: int = 0) -> list[str]:
    """header_tokens - the presence and shape of the top-level headers.

    ``internal`` is the count of the site's own Received hops at the top
    (``internal_hops``), left out of the hop count.
    """
    found: list[str] = []
    names = {name.lower()[:40] for name, _ in message.raw_headers[:200]}
    found.extend("hn:" + name for name in names if not name.startswith(_IGNORED_HEADERS))
    mailer = (message.header("x-mailer") or message.header("user-agent") or "")[:100].split()
    if mailer:
        found.append("hx:" + mailer[0].lower()[:30])
    found.append("hr:" + _bucket(max(0, message.count_header("received") - internal)))
    senders = message.from_addresses
    if len(senders) == 1:
        sender = senders[0]
        found.append("hf:tld_" + sender.domain.rsplit(".", 1)[-1][:20])
        found.append("hf:dom_" + _domain_tail(sender.domain))
        found.append("hf:named" if sender.display_name else "hf:bare")
        if "@" in sender.display_name:
            found.append("hf:address_in_name")
        local = sender.address.split("@")[0].lower()
        if sum(c.isdigit() for c in local) >= 4:
            found.append("hf:digits_local")
        reply = message.addresses("reply-to")
        if reply and reply[0].domain != sender.domain:
            found.append("hf:reply_to_elsewhere")
    msgid = _MSGID.search(message.message_id[:400])
    if msgid is None:
        found.append("hm:" + ("missing" if not message.message_id else "odd"))
    elif len(senders) == 1 and _domain_tail(msgid.group(2)) == _domain_tail(senders[0].domain):
        found.append("hm:from_domain")
    if not message.header("date"):
        found.append("hd:missing")
    subject = message.subject[:300]
    letters = [c for c in subject if c.isalpha()]
    if len(letters) > 5 and sum(map(str.isupper, letters)) > 0.6 * len(letters):
        found.append("hs:caps")
    if _NON_ASCII.search(subject):
        found.append("hs:non_ascii")
    if "=?" in (message.root.raw_values("subject") or [""])[0][:300]:
        found.append("hs:encoded")
    found.append("hs:bang_" + _bucket(subject.count("!")))
    found.append("hc:to_" + _bucket(len(message.addresses("to"))))
    return found


_HEADER_WORD = re.compile(r"[a-z0-9][a-z0-9_.-]{1,40}")
_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9]{0,10})([^>]{0,300})>")
_ATTRIBUTE = re.compile(r"([a-zA-Z-]{1,20})\s*=\s*[\"']?([#\w.-]{0,20})")
_VALUE_HEADERS = frozenset((
    "received", "from", "return-path", "reply-to", "message-id", "x-mailer",
    "user-agent", "content-type", "list-id", "list-unsubscribe", "sender", "x-mimeole",
    "precedence", "organization", "x-originating-ip", "to", "cc"))


# Words of dates and times, and numbers: when a message passed a relay says
# nothing of who sent it, and a model that learns them learns when its corpus
# was made.
_TIME_WORDS = frozenset(
    "mon tue wed thu fri sat sun jan feb mar apr may jun jul aug sep oct nov dec "
    "gmt utc ut est edt cst cdt mst mdt pst pdt bst ist cet cest eet eest met mest "
    "jst kst hkt sgt aest aedt".split())


def header_value_tokens(message: Message, internal: int = 0) -> list[str]:
    """header_value_tokens - words of the headers that say where mail came from.

    The first ``internal`` Received headers (the site's own hops) are skipped.
    """
    found: list[str] = []
    for name, value in message.raw_headers[:100]:
        name = name.lower()
        if name == "received" and internal > 0:
            internal -= 1
            continue
        if name in _VALUE_HEADERS:
            head = f"hv:{name[:12]}:"
            words = _HEADER_WORD.findall(value[:400].lower())[:60]
            found.extend([head + w for w in words
                          if w not in _TIME_WORDS and not w.isdigit()])
    return found


def html_tokens(message: Message) -> list[str]:
    """html_tokens - the tags and attributes the HTML of the body is made of."""
    found: list[str] = []
    for part in message.html_parts[:5]:
        for tag, rest in _TAG.findall(part.text[:MAX_TEXT * 2])[:2000]:
            tag = tag.lower()
            found.append("ht:" + tag)
            if "=" in rest:  # else no attribute matches
                found.extend([f"ha:{tag}:{a.lower()}={v.lower()}" for a, v in
                              _ATTRIBUTE.findall(rest)[:10]])
    return found


def structure_tokens(message: Message, text: str) -> list[str]:
    """structure_tokens - MIME shape, charsets, attachments, links, length."""
    found = ["ct:" + message.root.content_type]
    found.extend("pt:" + e.content_type for e in message.entities[1:50])
    found.extend("cs:" + e.charset[:30] for e in (message.text_parts + message.html_parts)[:20])
    if message.html_parts and not message.text_parts:
        found.append("st:html_only")
    if message.hidden_text:
        found.append("st:hidden_text")
        found.append("st:hidden_" + _bucket(len(message.hidden_text) // 16))
    urls = message.urls
    found.append("st:urls_" + _bucket(len(urls)))
    found.append("st:len_" + _bucket(len(text) // 64))
    found.extend("u:" + _domain_tail(host) for host in {u.host for u in urls[:200]})
    for part in message.attachments[:50]:
        name = (part.filename or "").lower()
        found.append("at:" + (name.rsplit(".", 1)[-1][:10] if "." in name
                              else part.content_type))
    found.extend("d:" + defect.split(":")[0][:40] for defect in set(message.all_defects))
    if text and sum(map(str.isupper, text[:2000])) > 0.3 * min(len(text), 2000):
        found.append("st:text_caps")
    return found


def finding_tokens(findings: Iterable[Finding]) -> list[str]:
    """finding_tokens - the content findings of earlier checks, by symbol."""
    return ["f:" + f.symbol for f in findings if f.symbol.startswith(FINDING_FAMILIES)
            and f.symbol not in NOT_FEATURES]


# A run: strings of one group, and the group's index in GROUPS. The model
# counts and hashes a run without asking each string its group
# (``content.model.Bag``); ``token_group`` of each string is the run's.
Run = tuple[list[str], int]
TEXT, SUBJECT, HEADERS, HEADER_VALUES, HTML, STRUCTURE, FINDINGS, NGRAMS = range(len(GROUPS))


def reading_runs(message: Message) -> list[Run]:
    """reading_runs - the strings of what a reader sees: subject, then text.

    Both content classifiers start from these.
    """
    subject, subject_grams = text_parts(message.subject[:500], "s:")
    words, grams = text_parts(message.text)
    return [(subject, SUBJECT), (subject_grams, SUBJECT), (words, TEXT), (grams, NGRAMS)]


def spam_runs(message: Message, findings: Iterable[Finding] = (),
              internal_hosts: Iterable[str] = ()) -> list[Run]:
    """spam_runs - what the spam model sees besides ``reading_runs``.

    ``internal_hosts`` are the site's own mail hosts (``spam.internal_hosts``):
    the Received headers they added are not read (``internal_hops``).
    """
    internal = internal_hops(message, internal_hosts)
    return [(header_tokens(message, internal), HEADERS),
            (header_value_tokens(message, internal), HEADER_VALUES),
            (html_tokens(message), HTML),
            (structure_tokens(message, message.text), STRUCTURE),
            (finding_tokens(findings), FINDINGS)]


def flatten(runs: Iterable[Run]) -> list[str]:
    """flatten - the strings of runs, in order, as one list."""
    return [token for tokens, _ in runs for token in tokens]


def reading_tokens(message: Message) -> list[str]:
    """reading_tokens - ``reading_runs`` as one list of strings."""
    return flatten(reading_runs(message))


def spam_tokens(message: Message, findings: Iterable[Finding] = (),
                internal_hosts: Iterable[str] = ()) -> list[str]:
    """spam_tokens - everything the spam model sees of a message, as one list."""
    return flatten(reading_runs(message) + spam_runs(message, findings, internal_hosts))
