"""Detection figures from scores: one row per decision, per class.

A system's result is, per class (ham, spam, phishing), the score each
held-out message got, and for each of its own default decisions (tag,
quarantine, "is spam") whether the message was flagged. The figures are the
share caught at the threshold that keeps ham flagged at or below 0.1%, the
shares at the default decisions, and the AUC of each class against ham.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score

FPR = 0.001


@dataclass
class Result:
    system: str
    scores: dict[str, np.ndarray]
    decisions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    note: str = ""

    @property
    def messages(self) -> int:
        return sum(len(v) for v in self.scores.values())


def threshold_for(ham: np.ndarray, fpr: float = FPR) -> float:
    """threshold_for - flag above this and at most fpr of ham is flagged."""
    allowed = int(np.floor(fpr * len(ham)))
    ordered = np.sort(ham)[::-1]
    return float(ordered[allowed]) if allowed < len(ordered) else float("-inf")


def rows(result: Result) -> list[list[str]]:
    """rows - [system, decision, ham flagged, spam caught, phishing caught]."""
    ham = result.scores["ham"]
    limit = threshold_for(ham)
    found = [[result.system, f"threshold for <= {FPR:.1%} ham (score > {limit:.2f})",
              f"{np.mean(ham > limit):.2%}",
              *(f"{np.mean(result.scores[c] > limit):.2%}" for c in ("spam", "phishing"))]]
    for name, flagged in result.decisions.items():
        found.append([result.system, name, f"{np.mean(flagged['ham']):.2%}",
                      *(f"{np.mean(flagged[c]):.2%}" for c in ("spam", "phishing"))])
    return found


def aucs(result: Result) -> str:
    ham = result.scores["ham"]
    parts = []
    for name in ("spam", "phishing"):
        other = result.scores[name]
        labels = np.r_[np.zeros(len(ham)), np.ones(len(other))]
        parts.append(f"{name} {roc_auc_score(labels, np.r_[ham, other]):.4f}")
    return "AUC against ham: " + ", ".join(parts)


def speed(result: Result) -> str:
    if not result.seconds:
        return ""
    return (f"{result.messages / result.seconds:.0f} messages/s, "
            f"CPU {result.cpu_seconds / result.messages * 1000:.1f} ms per message")


def print_results(results: list[Result]) -> None:
    """print_results - one table of every system's rows, then AUC and speed."""
    from rich.console import Console
    from rich.table import Table

    table = Table("system", "decision", "ham flagged", "spam caught", "phishing caught")
    for result in results:
        for row in rows(result):
            table.add_row(*row)
    console = Console(width=140)
    console.print(table)
    for result in results:
        console.print(f"{result.system}: {aucs(result)}; {speed(result)} {result.note}")
