"""Holding: a message accepted with 250 that waits for an outside verdict.

A check that cannot decide at once (a file must run in a sandbox) asks for
a hold by adding a HoldRequest to ``task.holds``, naming the Holder that
will decide. When the static verdict would let the message through, the
gateway keeps it in the "held" state (spooled, its deliveries recorded but
not due) and hands the requests to their holders. A holder later calls
``Gateway.resolve_hold`` with the findings it learnt (or with a time-out
finding); the policy then decides again over all findings, and the message
is delivered, tagged or quarantined exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.verdict import Verdict


@dataclass(slots=True)
class HoldRequest:
    """A check's request that the message wait for its holder's verdict."""

    owner: str
    reason: str
    items: list[dict[str, Any]] = field(default_factory=list)


class Holder(Protocol):
    """Something that decides held messages later (a sandbox service)."""

    name: str

    async def hold(self, envelope: "Envelope", message: "Message", verdict: "Verdict",
                   requests: list[HoldRequest]) -> None:
        """hold - start deciding; called once the hold is recorded durably."""

    async def run(self) -> None:
        """run - work until cancelled (in ``mailward serve`` only)."""
