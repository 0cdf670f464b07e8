"""DMARC (RFC 7489, with DMARCbis where it differs): does the From domain allow this?

The one RFC 5322.From domain is looked up (``_dmarc.<domain>``, then the
organizational domain); the message passes when an SPF pass or a full DKIM
pass is aligned with it (relaxed: same organizational domain; strict: the
same name). The organizational domain comes from the public suffix list
(the publicsuffixlist package) or, by configuration, from the DMARCbis DNS
tree walk (``psd=`` marks public-suffix domains). A failing message gets the
published ``p``, ``sp`` for subdomains, or DMARCbis ``np`` for subdomains
that do not exist; ``pct`` samples the policy (RFC 7489 6.6.4). What that
means here is configuration: by default p=reject is a rejection in the SMTP
session and p=quarantine a quarantine, and a sending domain may be given its
own action. A trusted ARC sealer that recorded a DMARC pass overrides a
local failure (mailing lists and forwarders), and the override is recorded.

SECURITY: the From header is hostile. Zero or several From addresses, or
one that does not parse, never pass: the result is permerror, and when
several From headers name domains, the strictest policy among them applies
(a signed bottom From must not lend its pass to an unsigned top one).
"""

from __future__ import annotations

import enum
import logging
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from mailward.auth.dns import DnsError, Resolver
from mailward.pipeline import Stage, Task
from mailward.verdict import Category, Finding

if TYPE_CHECKING:
    from mailward.message import Message

log = logging.getLogger("mailward.auth")

MAX_TREE_WALK = 8
_STRICTNESS = {"none": 0, "quarantine": 1, "reject": 2}
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}


class DmarcResult(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed DMARC policy record (RFC 7489 6.3, DMARCbis np= and psd=)."""

    p: str
    sp: str | None = None
    np: str | None = None
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    psd: str = "u"
    text: str = ""


class DmarcRecordError(ValueError):
    """A TXT record at _dmarc that is not a usable DMARC record."""


def parse_record(text: str) -> DmarcRecord:
    """parse_record - a DMARC record, or DmarcRecordError (RFC 7489 6.3, 6.6.3)."""
    tags: dict[str, str] = {}
    for index, part in enumerate(text.split(";")):
        part = part.strip()
        if not part:
            continue
        name, equals, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not equals:
            raise DmarcRecordError(f"tag {part!r} has no value")
        if index == 0 and (name != "v" or value != "DMARC1"):
            raise DmarcRecordError("record does not start with v=DMARC1")
        tags.setdefault(name, value)
    rua = tuple(uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip())
    policy = tags.get("p", "").lower()
    if policy not in _STRICTNESS:
        # RFC 7489 6.6.3: a record with rua but no valid p= is treated as p=none.
        if not any(uri.lower().startswith("mailto:") for uri in rua):
            raise DmarcRecordError(f"p={tags.get('p', '')!r} is not none, quarantine or reject")
        policy = "none"
    return DmarcRecord(
        p=policy, sp=_policy(tags.get("sp")), np=_policy(tags.get("np")),
        pct=_pct(tags.get("pct")), adkim=_mode(tags.get("adkim")),
        aspf=_mode(tags.get("aspf")), rua=rua,
        ruf=tuple(u.strip() for u in tags.get("ruf", "").split(",") if u.strip()),
        psd=tags.get("psd", "u").lower()[:1] or "u", text=text)


def _policy(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in _STRICTNESS else None


def _pct(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 100
    return max(0, min(100, int(value.strip())))


def _mode(value: str | None) -> str:
    return "s" if (value or "").strip().lower() == "s" else "r"


@dataclass(frozen=True, slots=True)
class Discovery:
    """Where the policy was found, and the organizational domain used for alignment."""

    record: DmarcRecord
    policy_domain: str
    org_domain: str


class PolicyFinder:
    """Policy discovery and organizational domains (RFC 7489 6.6.3, DMARCbis 4.10)."""

    def __init__(self, resolver: Resolver, method: str = "psl", psl_file: str = "") -> None:
        self.resolver = resolver
        self.method = method
        self._psl = None
        self._psl_file = psl_file

    @property
    def psl(self):
        if self._psl is None:
            from publicsuffixlist import PublicSuffixList

            if self._psl_file:
                with open(self._psl_file, encoding="utf-8") as handle:
                    self._psl = PublicSuffixList(handle)
            else:
                self._psl = PublicSuffixList()
        return self._psl

    def org_domain_psl(self, domain: str) -> str:
        """org_domain_psl - one label more than the public suffix (RFC 7489 3.2)."""
        return self.psl.privatesuffix(domain.lower()) or domain.lower()

    async def record_at(self, domain: str) -> DmarcRecord | None:
        """record_at - the one DMARC record of _dmarc.<domain>, or None; DnsError if unsure."""
        try:
            texts = await self.resolver.txt(f"_dmarc.{domain}")
        except DnsError as error:
            if error.is_void or error.kind == "badname":
                return None
            raise
        candidates = [t for t in texts if t.strip()[:8].lower().replace(" ", "")
                      .startswith("v=dmarc1")]
        records = []
        for text in candidates:
            try:
                records.append(parse_record(text))
            except DmarcRecordError:
                continue
        return records[0] if len(records) == 1 else None

    async def discover(self, domain: str) -> Discovery | None:
        """discover - the policy for a From domain; None when no domain publishes one."""
        domain = domain.lower().rstrip(".")
        if self.method == "tree-walk":
            return await self._tree_walk(domain)
        org = self.org_domain_psl(domain)
        record = await self.record_at(domain)
        if record is not None:
            return Discovery(record, domain, org)
        if org != domain:
            record = await self.record_at(org)
            if record is not None:
                return Discovery(record, org, org)
        return None

    async def _tree_walk(self, domain: str) -> Discovery | None:
        """_tree_walk - DMARCbis 4.10: walk up at most 8 names, psd= marks suffixes."""
        labels = domain.split(".")
        names = [domain]
        if len(labels) > MAX_TREE_WALK:
            labels = labels[-(MAX_TREE_WALK - 1):]
            names.append(".".join(labels))
        while len(labels) > 1:
            labels = labels[1:]
            names.append(".".join(labels))
        found: list[tuple[str, DmarcRecord]] = []
        for name in names:
            record = await self.record_at(name)
            if record is not None:
                found.append((name, record))
        if not found:
            return None
        policy_domain, record = found[0]
        return Discovery(record, policy_domain, _walk_org(domain, found))

    def organizational(self, domain: str, discovery: Discovery | None) -> str:
        """organizational - the organizational domain of any name, by the configured method."""
        if self.method == "tree-walk" and discovery is not None:
            org = discovery.org_domain
            if domain == org or domain.endswith("." + org):
                return org
            return domain
        return self.org_domain_psl(domain)


def _walk_org(domain: str, found: list[tuple[str, DmarcRecord]]) -> str:
    """_walk_org - DMARCbis organizational domain from the records of the walk."""
    for name, record in found:
        if record.psd == "n":
            return name
    for name, record in found:
        if record.psd == "y":
            if name == domain:
                return domain
            child = domain[:-(len(name) + 1)].rsplit(".", 1)[-1]
            return f"{child}.{name}"
    return found[-1][0]


def aligned(identifier: str, from_domain: str, mode: str,
            organizational: Callable[[str], str]) -> bool:
    """aligned - identifier alignment (RFC 7489 3.1)."""
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not identifier:
        return False
    if mode == "s":
        return identifier == from_domain
    return organizational(identifier) == organizational(from_domain)


@dataclass(slots=True)
class DmarcOutcome:
    """The evaluation of one message (what aggregate reports are made of)."""

    result: DmarcResult
    from_domain: str
    reason: str
    policy_domain: str = ""
    record: DmarcRecord | None = None
    applied: str = "none"
    disposition: str = "none"
    spf_aligned: bool = False
    dkim_aligned: bool = False
    override: str = ""
    override_comment: str = ""
    from_domains: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        record = self.record
        return {"result": str(self.result), "from_domain": self.from_domain,
                "reason": self.reason, "policy_domain": self.policy_domain,
                "p": record.p if record else "", "applied": self.applied,
                "disposition": self.disposition, "spf_aligned": self.spf_aligned,
                "dkim_aligned": self.dkim_aligned, "override": self.override,
                "override_comment": self.override_comment}


@dataclass(frozen=True, slots=True)
class AuthInputs:
    """What SPF and DKIM found, as DMARC needs it."""

    spf_domain: str = ""
    spf_result: str = "none"
    dkim: tuple[tuple[str, str, str], ...] = ()  # (domain, selector, result word)


class DmarcEvaluator:
    """RFC 7489 6.6 for one message."""

    def __init__(self, finder: PolicyFinder, rng: random.Random | None = None) -> None:
        self.finder = finder
        self.rng = rng or random.Random()

    async def evaluate(self, from_domain: str, inputs: AuthInputs) -> DmarcOutcome:
        """evaluate - the result and the policy the domain asks for."""
        try:
            discovery = await self.finder.discover(from_domain)
        except DnsError as error:
            return DmarcOutcome(DmarcResult.TEMPERROR, from_domain,
                                f"policy look-up failed: {error}")
        if discovery is None:
            return DmarcOutcome(DmarcResult.NONE, from_domain, "no DMARC policy published")
        record = discovery.record

        def organizational(name: str) -> str:
            return self.finder.organizational(name, discovery)

        spf_ok = inputs.spf_result == "pass" and aligned(
            inputs.spf_domain, from_domain, record.aspf, organizational)
        dkim_ok = any(result == "pass" and aligned(domain, from_domain, record.adkim,
                                                   organizational)
                      for domain, _, result in inputs.dkim)
        outcome = DmarcOutcome(DmarcResult.PASS if spf_ok or dkim_ok else DmarcResult.FAIL,
                               from_domain, "", discovery.policy_domain, record,
                               spf_aligned=spf_ok, dkim_aligned=dkim_ok)
        if outcome.result == DmarcResult.PASS:
            outcome.reason = "aligned " + " and ".join(
                n for n, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok) + " pass"
            return outcome
        outcome.applied = await self._requested(from_domain, discovery)
        outcome.disposition = outcome.applied
        if record.pct < 100 and self.rng.randrange(100) >= record.pct:
            outcome.disposition = _DOWNGRADE[outcome.applied]
            outcome.override = "sampled_out"
            outcome.override_comment = f"pct={record.pct}"
        outcome.reason = (f"no aligned SPF or DKIM pass; {discovery.policy_domain} "
                          f"asks p={record.p}" + (f" (applied {outcome.applied})"
                                                  if outcome.applied != record.p else ""))
        return outcome

    async def _requested(self, from_domain: str, discovery: Discovery) -> str:
        """_requested - p, sp for subdomains, np for subdomains that do not exist."""
        record = discovery.record
        if from_domain == discovery.policy_domain:
            return record.p
        if record.np and not await self._exists(from_domain):
            return record.np
        return record.sp or record.p

    async def _exists(self, domain: str) -> bool:
        """_exists - NXDOMAIN for the name means it does not exist (DMARCbis 4.7)."""
        try:
            await self.finder.resolver.lookup(domain, "A")
            return True
        except DnsError as error:
            return error.kind != "nxdomain"

    async def strictest(self, domains: list[str]) -> tuple[str, str]:
        """strictest - the strictest p= among several From domains, and whose it is."""
        best, owner = "none", ""
        for domain in dict.fromkeys(d.lower() for d in domains):
            try:
                discovery = await self.finder.discover(domain)
            except DnsError:
                continue
            if discovery and _STRICTNESS[discovery.record.p] > _STRICTNESS[best]:
                best, owner = discovery.record.p, domain
        return best, owner


_DOMAIN_IN_ADDRESS = re.compile(r"@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)\s*>?\s*$")


def from_header_domains(message: "Message") -> list[str]:
    """from_header_domains - the domain of each From header that names exactly one address."""
    domains = []
    for value in message.root.raw_values("from"):
        text = re.sub(r'"(?:[^"\\]|\\.)*"|\((?:[^()\\]|\\.)*\)', "", value).strip()
        match = _DOMAIN_IN_ADDRESS.search(text)
        if match and text.count("@") == 1:
            domains.append(match.group(1).lower())
    return domains


# The check.

_ACTION_SYMBOLS = {"reject": "DMARC_POLICY_REJECT", "quarantine": "DMARC_POLICY_QUARANTINE",
                   "tag": "DMARC_POLICY_TAG", "deliver": "DMARC_POLICY_NONE"}


def inputs_from(task: Task) -> AuthInputs:
    """inputs_from - the SPF (MAIL FROM) and DKIM results among the task's findings."""
    spf_domain, spf_result = "", "none"
    dkim: list[tuple[str, str, str]] = []
    for finding in task.findings:
        data = finding.data or {}
        if finding.symbol.startswith("SPF_") and not finding.symbol.startswith("SPF_HELO_"):
            spf_domain, spf_result = data.get("domain", ""), data.get("result", "none")
        elif finding.symbol.startswith("DKIM_"):
            for signature in data.get("signatures", []):
                dkim.append((signature["domain"], signature["selector"], signature["result"]))
    return AuthInputs(spf_domain, spf_result, tuple(dkim))


class DmarcCheck:
    """Evaluate DMARC for the message and name the action its policy asks for."""

    name: ClassVar[str] = "dmarc"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ("spf", "dkim", "arc")
    symbols: ClassVar[dict[str, str]] = {
        "DMARC_PASS": "an SPF or DKIM pass is aligned with the From domain",
        "DMARC_POLICY_REJECT": "DMARC failed and the domain's policy is mapped to reject",
        "DMARC_POLICY_QUARANTINE": "DMARC failed and the domain's policy is mapped to quarantine",
        "DMARC_POLICY_TAG": "DMARC failed and the domain's policy is mapped to a warning banner",
        "DMARC_POLICY_NONE": "DMARC failed; the domain only monitors (p=none), or was sampled out",
        "DMARC_NONE": "the From domain publishes no DMARC policy",
        "DMARC_TEMPERROR": "the DMARC policy could not be fetched (DNS failure)",
        "DMARC_BAD_FROM": "the message has no single usable From address, so DMARC cannot pass",
        "ARC_TRUSTED_OVERRIDE": "a DMARC failure was overridden: a trusted ARC sealer saw a pass",
    }

    def __init__(self, services, evaluator: DmarcEvaluator) -> None:
        self.services = services
        self.settings = services.settings.dmarc
        self.trusted_sealers = list(services.settings.arc.trusted_sealers)
        self.trusted = list(services.settings.auth.trusted_networks)
        self.evaluator = evaluator

    @classmethod
    def from_services(cls, services) -> "DmarcCheck | None":
        settings = services.settings.dmarc
        if not settings.enabled:
            return None
        finder = PolicyFinder(services.resolver, settings.org_domain, settings.psl_file)
        if settings.psl_file:
            finder.psl  # a broken list stops start-up, not every message
        return cls(services, DmarcEvaluator(finder))

    async def check(self, task: Task) -> list[Finding]:
        from mailward.auth import is_trusted_peer

        assert task.message is not None
        if is_trusted_peer(self.trusted, task.envelope.peer_ip):
            return []
        message = task.message
        inputs = inputs_from(task)
        if message.from_domain is None:
            outcome = await self._bad_from(message)
        else:
            outcome = await self.evaluator.evaluate(message.from_domain, inputs)
            self._overrides(task, outcome)
        task.scratch["dmarc"] = outcome
        if self.settings.record and task.envelope.peer_ip:
            # Only mail received over SMTP is reported; offline scans are not.
            await record_evaluation(self.services, task, outcome, inputs)
        return self._findings(outcome)

    async def _bad_from(self, message: "Message") -> DmarcOutcome:
        """_bad_from - zero, several or malformed From: permerror, strictest policy (C11)."""
        domains = from_header_domains(message)
        count = message.count_header("from")
        outcome = DmarcOutcome(DmarcResult.PERMERROR, ",".join(domains),
                               f"{count} From header(s); no single From domain to evaluate",
                               from_domains=domains)
        if len(domains) > 1 or (count > 1 and domains):
            policy, owner = await self.evaluator.strictest(domains)
            outcome.applied = outcome.disposition = policy
            outcome.policy_domain = owner
            if owner:
                outcome.reason += f"; strictest policy among them is p={policy} of {owner}"
        return outcome

    def _overrides(self, task: Task, outcome: DmarcOutcome) -> None:
        """_overrides - a trusted ARC sealer's pass, or the local per-domain action."""
        from mailward.auth.arc import ArcResult, trusted_pass

        if outcome.result != DmarcResult.FAIL:
            return
        arc = task.scratch.get("arc")
        if isinstance(arc, ArcResult) and self.trusted_sealers:
            arc_set = trusted_pass(arc, self.trusted_sealers, outcome.from_domain)
            if arc_set is not None:
                outcome.disposition = "none"
                outcome.override = "trusted_forwarder"
                outcome.override_comment = (f"arc=pass; sealer {arc_set.seal_domain} "
                                            f"(i={arc_set.instance}) recorded dmarc=pass")

    def _action(self, outcome: DmarcOutcome) -> str:
        """_action - what the applied policy means here (configuration, RFC 7489 6.7)."""
        domain = outcome.from_domain
        for name in (domain, outcome.policy_domain):
            if name and name in self.settings.overrides:
                outcome.override = outcome.override or "local_policy"
                outcome.override_comment = (outcome.override_comment or
                                            f"dmarc.overrides[{name}]")
                return self.settings.overrides[name]
        return {"reject": self.settings.on_reject,
                "quarantine": self.settings.on_quarantine}.get(outcome.disposition, "deliver")

    def _findings(self, outcome: DmarcOutcome) -> list[Finding]:
        from mailward.auth.results import method_result

        authres = method_result("dmarc", str(outcome.result), _authres_reason(outcome),
                                [("header.from", outcome.from_domain.split(",")[0])])
        data = {**outcome.as_dict(), "authres": authres}
        detail = f"{outcome.from_domain or '(no From domain)'}: {outcome.reason}"
        if outcome.result == DmarcResult.PASS:
            return [Finding("DMARC_PASS", Category.AUTH, detail, data=data)]
        if outcome.result == DmarcResult.NONE:
            return [Finding("DMARC_NONE", Category.AUTH, detail, data=data)]
        if outcome.result == DmarcResult.TEMPERROR:
            return [Finding("DMARC_TEMPERROR", Category.AUTH, detail, data=data)]
        findings = []
        if outcome.result == DmarcResult.PERMERROR:
            findings.append(Finding("DMARC_BAD_FROM", Category.AUTH, detail, data=data))
            data = {}
        if outcome.override == "trusted_forwarder":
            return findings + [Finding("ARC_TRUSTED_OVERRIDE", Category.AUTH,
                                       f"{detail}; overridden: {outcome.override_comment}",
                                       data=data)]
        action = self._action(outcome)
        if outcome.result == DmarcResult.PERMERROR and outcome.disposition == "none":
            return findings
        if outcome.override == "local_policy":
            detail += f"; local override: {action}"
        elif outcome.override == "sampled_out":
            detail += f"; sampled out by {outcome.override_comment}, applied {outcome.disposition}"
        return findings + [Finding(_ACTION_SYMBOLS[action], Category.AUTH, detail, data=data)]


def _authres_reason(outcome: DmarcOutcome) -> str:
    record = outcome.record
    parts = []
    if record is not None:
        parts.append(f"p={record.p.upper()} dis={outcome.disposition.upper()}")
    if outcome.override:
        parts.append(f"override {outcome.override}: {outcome.override_comment}")
    return " ".join(parts) or outcome.reason


async def record_evaluation(services, task: Task, outcome: DmarcOutcome,
                            inputs: AuthInputs) -> None:
    """record_evaluation - one row for aggregate reports (RFC 7489 7.2)."""
    from mailward.store.models import DmarcEvaluation

    if outcome.record is None or not outcome.policy_domain:
        return
    record = outcome.record
    envelope = task.envelope
    row = DmarcEvaluation(
        queue_id=envelope.queue_id, evaluated_at=services.clock(),
        source_ip=envelope.peer_ip[:64], header_from=outcome.from_domain[:255],
        envelope_from=envelope.mail_from_domain[:255],
        policy_domain=outcome.policy_domain[:255], p=record.p, sp=record.sp or "",
        pct=record.pct, adkim=record.adkim, aspf=record.aspf, rua=",".join(record.rua)[:2000],
        result=str(outcome.result), disposition=outcome.disposition,
        dkim_aligned=outcome.dkim_aligned, spf_aligned=outcome.spf_aligned,
        override=outcome.override, override_comment=outcome.override_comment[:500],
        spf_domain=inputs.spf_domain[:255], spf_result=inputs.spf_result,
        dkim_results=[{"domain": d, "selector": s, "result": r} for d, s, r in inputs.dkim])
    try:
        async with services.store.session() as session:
            session.add(row)
            await session.commit()
    except Exception as error:  # a report row is never worth failing a message for
        task.log.warning("DMARC evaluation not recorded: %s: %s", type(error).__name__, error)
