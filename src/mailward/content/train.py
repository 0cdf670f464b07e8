"""Training the spam model from folders of ham and spam.

The messages are split by a hash of their file name (so a re-run splits the
same way), the model is fitted on one part and measured on the other, and
the model that is saved is then fitted on all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mailward.content.spam import SpamModel, tokens, vectorize
from mailward.message import Message

MAX_FILE = 4 * 1024 * 1024


def message_files(paths: Iterable[Path]) -> list[Path]:
    """message_files - the files under the given files and folders, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file()
                         and not p.name.startswith(".") and p.suffix.lower() not in
                         (".md", ".tsv", ".txt", ".json", ".yml"))
        elif path.is_file():
            found.append(path)
    return found


def held_out(path: Path, share: float) -> bool:
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


@dataclass
class Quality:
    ham: int
    spam: int
    auc: float
    spam_caught_at_05: float
    ham_flagged_at_05: float
    spam_caught_at_fp_01: float

    def lines(self) -> list[str]:
        return [f"held-out: {self.ham} ham, {self.spam} spam",
                f"AUC {self.auc:.4f}",
                f"at p>=0.5: spam caught {self.spam_caught_at_05:.2%}, "
                f"ham flagged {self.ham_flagged_at_05:.2%}",
                f"at the threshold keeping ham flagged <= 0.1%: spam caught "
                f"{self.spam_caught_at_fp_01:.2%}"]


def tpr_at_fpr(ham_scores: np.ndarray, spam_scores: np.ndarray, fpr: float) -> float:
    """tpr_at_fpr - share of spam above the lowest threshold that flags <= fpr of ham."""
    if len(ham_scores) == 0 or len(spam_scores) == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(ham_scores)))
    ordered = np.sort(ham_scores)[::-1]
    threshold = ordered[allowed] if allowed < len(ordered) else -np.inf
    return float(np.mean(spam_scores > threshold))


def _fit(matrix, labels: np.ndarray) -> LogisticRegression:
    model = LogisticRegression(C=20.0, max_iter=2000, solver="liblinear",
                               class_weight="balanced")
    model.fit(matrix, labels)
    return model


def train(ham: list[Path], spam: list[Path], *, holdout: float = 0.2,
          progress: Callable[[int], None] = lambda n: None,
          sources: str = "") -> tuple[SpamModel, Quality | None]:
    """train - fit the model; measure it on a held-out share first."""
    files = [(p, 0) for p in ham] + [(p, 1) for p in spam]
    token_lists = []
    for path, _ in files:
        data = path.read_bytes()[:MAX_FILE]
        token_lists.append(tokens(Message(data)))
        progress(1)
    labels = np.array([label for _, label in files])
    matrix = vectorize(token_lists)
    quality = None
    if holdout > 0:
        test = np.array([held_out(path, holdout) for path, _ in files])
        if test.any() and (~test).any():
            model = _fit(matrix[~test], labels[~test])
            scores = model.decision_function(matrix[test])
            test_labels = labels[test]
            ham_scores, spam_scores = scores[test_labels == 0], scores[test_labels == 1]
            quality = Quality(len(ham_scores), len(spam_scores),
                              float(roc_auc_score(test_labels, scores)),
                              float(np.mean(spam_scores > 0)), float(np.mean(ham_scores > 0)),
                              tpr_at_fpr(ham_scores, spam_scores, 0.001))
    model = _fit(matrix, labels)
    meta = {"trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ham": int((labels == 0).sum()), "spam": int((labels == 1).sum()),
            "sources": sources}
    return SpamModel(model.coef_.ravel().astype(np.float32), float(model.intercept_[0]),
                     meta), quality
