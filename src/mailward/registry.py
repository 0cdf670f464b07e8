"""The registry: which checks run, built from configuration.

Built-in checks are listed here by import path; other packages add checks
through the ``mailward.checks`` entry-point group. A check's class builds
itself from the services (``from_services``) and may return None when its
configuration turns it off. A check whose configuration is broken stops the
gateway at start-up with the reason, rather than failing every message.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from mailward.config import ConfigError, Settings
from mailward.pipeline import Check, Pipeline
from mailward.policy import Policy, Scores, check_symbols, load_scores
from mailward.services import Services

log = logging.getLogger("mailward.registry")

BUILTIN_CHECKS = [
    "mailward.connection.lists:ConnectionListsCheck",
    "mailward.connection.reputation:IpReputationCheck",
    "mailward.connection.dnsbl:DnsblCheck",
    "mailward.auth.spf:SpfCheck",
    "mailward.auth.dkim:DkimCheck",
    "mailward.auth.arc:ArcCheck",
    "mailward.auth.dmarc:DmarcCheck",
    "mailward.auth.results:AuthResultsCheck",
    "mailward.content.structure:StructureCheck",
    "mailward.content.external:ExternalSenderCheck",
    "mailward.content.antivirus:AntivirusCheck",
    "mailward.attachments.check:AttachmentCheck",
    "mailward.urls.reputation:UrlReputationCheck",
    "mailward.content.hidden:HiddenTextCheck",
    "mailward.content.language:LanguageCheck",
    "mailward.content.embedding:EmbeddingCheck",
    "mailward.content.spam:SpamModelCheck",
    "mailward.content.impostor:ImpostorCheck",
    "mailward.web.senders:SenderRuleCheck",
    "mailward.trap.policy:CampaignCheck",
]


def _load(path: str) -> type:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check_classes() -> list[type]:
    """check_classes - built-in checks, then those of installed plugins."""
    classes = [_load(path) for path in BUILTIN_CHECKS]
    for entry in entry_points(group="mailward.checks"):
        classes.append(entry.load())
    return classes


def build_checks(services: Services) -> list[Check]:
    """build_checks - an instance of every enabled check."""
    disabled = set(services.settings.pipeline.disabled_checks)
    classes = check_classes()
    known = {cls.name for cls in classes}
    unknown = disabled - known
    if unknown:
        raise ConfigError(f"pipeline.disabled_checks: unknown check(s) {sorted(unknown)}; "
                          f"known: {sorted(known)}")
    checks: list[Check] = []
    for cls in classes:
        if cls.name in disabled:
            continue
        try:
            instance = cls.from_services(services)
        except (ValueError, OSError) as error:
            raise ConfigError(f"check {cls.name} cannot start: {error}") from None
        if instance is not None:
            checks.append(instance)
    return checks


def load_site_scores(settings: Settings) -> Scores:
    """load_site_scores - the configured scores file; a symbol no check emits is an error."""
    scores = load_scores(settings.policy.scores_file)
    check_symbols(scores, (symbol for cls in check_classes() for symbol in cls.symbols))
    return scores


def build_pipeline(services: Services) -> Pipeline:
    """build_pipeline - the checks, the policy and the deadline from settings."""
    scores = load_site_scores(services.settings)
    checks = build_checks(services)
    for item in checks:
        missing = [s for s in item.symbols if s not in scores.symbols]
        if missing:
            log.warning("check %s emits symbols with no score: %s", item.name,
                        ", ".join(missing))
    policy = Policy(scores, services.settings.policy)
    return Pipeline(checks, policy, services.settings.pipeline.deadline)
