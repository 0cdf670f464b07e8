"""External sender: mail whose sender domain is not one of ours.

The banner warns of it, and later checks (impostor detection) build on it.
The sender is the RFC 5322.From domain a reader sees; when that header is
unusable, the envelope sender.
"""

from __future__ import annotations

from typing import ClassVar

from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding


def is_own_domain(domain: str, accepted: list[str]) -> bool:
    """is_own_domain - the domain is an accepted domain (``smtp.accepted_domains``).

    ``example.com`` is that domain only; ``*.example.com`` is every domain
    under it, and not example.com itself.
    """
    domain = domain.lower().rstrip(".")
    return any(domain.endswith(own[1:]) if own.startswith("*.") else domain == own
               for own in accepted)


def own_domains(settings) -> list[str]:
    """own_domains - the accepted domains as parents of our hosts (``*.`` dropped).

    For the hosts of links and the like, where every host under one of our
    domains is ours, whichever way the domain is written in the setting.
    """
    return list(dict.fromkeys(d.removeprefix("*.") for d in settings.smtp.accepted_domains))


class ExternalSenderCheck:
    """Mark mail from outside the organisation's accepted domains."""

    name: ClassVar[str] = "external_sender"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "EXTERNAL_SENDER": "the sender domain is not one of the accepted domains",
    }

    def __init__(self, accepted: list[str]) -> None:
        self.accepted = accepted

    @classmethod
    def from_services(cls, services: Services) -> "ExternalSenderCheck | None":
        accepted = services.settings.smtp.accepted_domains
        return cls(accepted) if accepted else None

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        domain = task.message.from_domain or task.envelope.mail_from_domain
        if domain and not is_own_domain(domain, self.accepted):
            return [Finding("EXTERNAL_SENDER", Category.POLICY, f"sender domain {domain}")]
        return []
