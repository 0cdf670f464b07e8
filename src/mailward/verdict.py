"""Findings, verdicts and actions: the record of why.

A check emits Findings (a named symbol, a category and evidence a person can
read). The policy turns all findings of a message into one Verdict: the
scored findings, the score of each category, the action and the step of the
policy that chose it. The quarantine view, the added headers and the log line
are all built from that one record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Category(enum.StrEnum):
    """What a finding says the message is."""

    SPAM = "spam"
    PHISH = "phish"
    MALWARE = "malware"
    IMPOSTOR = "impostor"
    AUTH = "auth"
    POLICY = "policy"


class Action(enum.StrEnum):
    """What the gateway does with a message, from mildest to strictest."""

    DELIVER = "deliver"
    TAG = "tag"
    QUARANTINE = "quarantine"
    REJECT = "reject"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {Action.DELIVER: 0, Action.TAG: 1, Action.QUARANTINE: 2,
                Action.REJECT: 3}


@dataclass(frozen=True, slots=True)
class Finding:
    """One named outcome of a check.

    ``weight`` scales the symbol's configured score (a classifier sets it from
    its confidence); ``data`` carries machine-readable evidence (URLs,
    hashes) for the index and the console.
    """

    symbol: str
    category: Category
    detail: str = ""
    weight: float = 1.0
    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ScoredFinding:
    """A finding with the score the policy gave it."""

    symbol: str
    category: Category
    score: float
    detail: str
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "score": round(self.score, 3),
                "category": str(self.category), "detail": self.detail}


@dataclass(slots=True)
class Verdict:
    """All findings of a message, the category scores and the action.

    ``headers`` are fields the checks asked to add to the delivered message
    (such as Authentication-Results), in order.
    """

    action: Action
    score: float
    reason: str
    findings: list[ScoredFinding]
    categories: dict[str, float]
    category: Category | None = None
    reject_text: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def top_symbols(self, count: int = 5) -> list[str]:
        ranked = sorted(self.findings, key=lambda f: -abs(f.score))
        return [f.symbol for f in ranked[:count] if f.score != 0]

    def has(self, symbol: str) -> bool:
        return any(f.symbol == symbol for f in self.findings)

    def header_value(self) -> str:
        """header_value - the X-Mailward-Verdict header: action, score, symbols."""
        symbols = ",".join(self.top_symbols()) or "none"
        return f"{self.action}; score={self.score:.2f}; symbols={symbols}"

    def as_dict(self) -> dict[str, Any]:
        return {"action": str(self.action), "score": round(self.score, 3),
                "reason": self.reason,
                "category": str(self.category) if self.category else None,
                "categories": {k: round(v, 3) for k, v in self.categories.items()},
                "findings": [f.as_dict() for f in self.findings],
                "headers": [list(pair) for pair in self.headers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        findings = [ScoredFinding(f["symbol"], Category(f["category"]), f["score"],
                                  f.get("detail", "")) for f in data["findings"]]
        category = data.get("category")
        return cls(action=Action(data["action"]), score=data["score"],
                   reason=data.get("reason", ""), findings=findings,
                   categories=dict(data.get("categories", {})),
                   category=Category(category) if category else None,
                   headers=[(str(n), str(v)) for n, v in data.get("headers", [])])
