"""Training the content classifiers from folders of ham, spam and phishing.

The messages are split by a hash of their file name (so a re-run splits the
same way); a model is fitted on one part and measured on the other, and the
model that is saved is then fitted on all of them. The fit is a logistic
regression over naive-Bayes-weighted hashed features: each feature is first
scaled by the log-ratio of its frequency in the two classes, which lets the
linear model rank rare, telling tokens as a Bayes filter would while keeping
the discriminative fit. The two scalings multiply into one weight vector,
so the saved model is a plain linear model. Its probability is calibrated
(Platt) on scores the model gave to messages it was not fitted on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mailward.config import Settings, load_settings
from mailward.content.model import LinearModel, N_FEATURES, vectorize
from mailward.message import Message

MAX_FILE = 4 * 1024 * 1024
REGULARIZATION = 200.0
SMOOTHING = 0.5
FOLDS = 3
_SKIP_SUFFIXES = (".md", ".tsv", ".txt", ".json", ".yml", ".npz")


def message_files(paths: Iterable[Path]) -> list[Path]:
    """message_files - the files under the given files and folders, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file()
                         and not p.name.startswith(".")
                         and p.suffix.lower() not in _SKIP_SUFFIXES)
        elif path.is_file():
            found.append(path)
    return found


def read_message(path: Path) -> Message:
    """read_message - parse a message file (its first MAX_FILE bytes)."""
    with path.open("rb") as handle:
        return Message(handle.read(MAX_FILE))


def held_out(path: Path, share: float) -> bool:
    """held_out - whether this file is in the held-out share (by a hash of its name)."""
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def tpr_at_fpr(negative: np.ndarray, positive: np.ndarray, fpr: float
               ) -> tuple[float, float]:
    """tpr_at_fpr - (share caught, threshold) at the lowest threshold flagging <= fpr.

    A message is flagged when its score is above the threshold; the
    threshold is the score of the negative with rank floor(fpr * n).
    """
    if len(negative) == 0 or len(positive) == 0:
        return float("nan"), float("nan")
    allowed = int(np.floor(fpr * len(negative)))
    ordered = np.sort(negative)[::-1]
    threshold = float(ordered[allowed]) if allowed < len(ordered) else float("-inf")
    return float(np.mean(positive > threshold)), threshold


@dataclass
class Quality:
    """How a model did on messages it was not fitted on."""

    negative: int
    positive: int
    auc: float
    caught_at_half: float
    flagged_at_half: float
    caught_at_fp_01: float
    positive_name: str = "spam"
    negative_name: str = "ham"

    def rows(self) -> list[tuple[str, str]]:
        name, other = self.positive_name, self.negative_name
        return [("held-out messages", f"{self.negative} {other}, {self.positive} {name}"),
                ("AUC", f"{self.auc:.4f}"),
                (f"{name} caught at p >= 0.5", f"{self.caught_at_half:.2%}"),
                (f"{other} flagged at p >= 0.5", f"{self.flagged_at_half:.2%}"),
                (f"{name} caught with {other} flagged <= 0.1%", f"{self.caught_at_fp_01:.2%}")]

    def lines(self) -> list[str]:
        return [f"{label}: {value}" for label, value in self.rows()]


def _feature_ratio(matrix: sparse.csr_matrix, labels: np.ndarray) -> np.ndarray:
    """_feature_ratio - log-ratio of each feature's share in positives to negatives."""
    positive = np.asarray(matrix[labels == 1].sum(axis=0)).ravel() + SMOOTHING
    negative = np.asarray(matrix[labels == 0].sum(axis=0)).ravel() + SMOOTHING
    return np.log((positive / positive.sum()) / (negative / negative.sum()))


def fit_linear(matrix: sparse.csr_matrix, labels: np.ndarray,
               regularization: float = REGULARIZATION) -> tuple[np.ndarray, float]:
    """fit_linear - (weights, intercept) of the NB-weighted logistic regression."""
    ratio = _feature_ratio(matrix, labels)
    scaled = matrix @ sparse.diags(ratio)
    model = LogisticRegression(C=regularization, solver="liblinear", max_iter=3000)
    model.fit(scaled, labels)
    return (model.coef_.ravel() * ratio).astype(np.float32), float(model.intercept_[0])


def _fold_of(count: int) -> np.ndarray:
    return np.arange(count) % FOLDS


def calibrate(matrix: sparse.csr_matrix, labels: np.ndarray) -> tuple[float, float]:
    """calibrate - Platt (slope, offset) from out-of-fold raw scores."""
    folds = _fold_of(len(labels))
    scores = np.zeros(len(labels))
    for fold in range(FOLDS):
        test = folds == fold
        train = ~test
        if len(set(labels[train])) < 2 or not test.any():
            return 1.0, 0.0
        coef, intercept = fit_linear(matrix[train], labels[train])
        scores[test] = matrix[test] @ coef.astype(np.float64) + intercept
    platt = LogisticRegression(C=1.0)
    platt.fit(scores.reshape(-1, 1), labels)
    return float(platt.coef_[0][0]), float(platt.intercept_[0])


def measure(matrix: sparse.csr_matrix, labels: np.ndarray, test: np.ndarray,
            positive_name: str, negative_name: str = "ham") -> Quality | None:
    """measure - fit without the held-out rows, score them."""
    if not test.any() or test.all() or len(set(labels[~test])) < 2:
        return None
    coef, intercept = fit_linear(matrix[~test], labels[~test])
    scores = matrix[test] @ coef.astype(np.float64) + intercept
    test_labels = labels[test]
    negative, positive = scores[test_labels == 0], scores[test_labels == 1]
    if len(negative) == 0 or len(positive) == 0:
        return None
    return Quality(len(negative), len(positive), float(roc_auc_score(test_labels, scores)),
                   float(np.mean(positive > 0)), float(np.mean(negative > 0)),
                   tpr_at_fpr(negative, positive, 0.001)[0], positive_name, negative_name)


def build(token_lists: list[list[str]], labels: np.ndarray, test: np.ndarray | None,
          positive_name: str, meta: dict,
          step: Callable[[str], None] = lambda what: None,
          groups: tuple[float, ...] | None = None,
          negative_name: str = "ham") -> tuple[LinearModel, Quality | None]:
    """build - measure on the held-out rows, then fit and calibrate on all."""
    matrix = vectorize(token_lists, groups)
    quality = None
    if test is not None:
        step("measuring on the held-out part")
        quality = measure(matrix, labels, test, positive_name, negative_name)
    step("fitting on all messages")
    coef, intercept = fit_linear(matrix, labels)
    step("calibrating")
    calibration = calibrate(matrix, labels)
    meta = dict(meta, trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
                **{negative_name.replace(" ", "_"): int((labels == 0).sum()),
                   positive_name: int((labels == 1).sum())},
                features=N_FEATURES)
    if quality is not None:
        meta["held_out"] = dict(quality.rows())
    return LinearModel(coef, intercept, calibration, meta, groups), quality


@dataclass
class Trained:
    """A trained model, where it goes, and how it did on held-out mail."""

    kind: str
    model: LinearModel
    quality: Quality | None


def train_models(ham: list[Path], spam: list[Path], phishing: list[Path], *,
                 holdout: float = 0.2, sources: str = "",
                 progress: Callable[[int], None] = lambda n: None,
                 step: Callable[[str], None] = lambda what: None,
                 settings: Settings | None = None) -> list[Trained]:
    """train_models - the spam model (ham against spam and phishing) and,
    given phishing, the language model (phishing against ham and spam).

    The language model names phishing, not unwanted mail: its negatives are
    the spam too, so that an advertisement's language (which the spam model
    already weighs) does not count again as a phisher's.

    The findings that are features come from the checks as ``settings``
    (default: the embedded defaults) build them, as on the wire.
    """
    from mailward.content.features import GROUP_WEIGHTS, spam_tokens
    from mailward.content.language import find_cues, language_tokens, reader_text
    from mailward.content.spam import content_findings

    internal_hosts = (settings or load_settings()).spam.internal_hosts
    files = [(p, 0) for p in ham] + [(p, 1) for p in spam] + [(p, 2) for p in phishing]
    spam_rows: list[list[str]] = []
    language_rows: list[list[str]] = []
    for path, _ in files:
        message = read_message(path)
        findings = content_findings(message, settings)
        spam_rows.append(spam_tokens(message, findings, internal_hosts))
        if phishing:
            language_rows.append(language_tokens(message, find_cues(reader_text(message))))
        progress(1)
    kinds = np.array([kind for _, kind in files])
    test = np.array([held_out(path, holdout) for path, _ in files]) if holdout > 0 else None
    meta = {"sources": sources}
    results: list[Trained] = []
    if spam:
        step("spam model")
        model, quality = build(spam_rows, (kinds > 0).astype(int), test, "spam",
                               dict(meta, kind="spam"), step, GROUP_WEIGHTS)
        results.append(Trained("spam", model, quality))
    if phishing:
        step("language model")
        model, quality = build(language_rows, (kinds == 2).astype(int), test, "phishing",
                               dict(meta, kind="language"), step,
                               negative_name="ham and spam" if spam else "ham")
        results.append(Trained("language", model, quality))
    return results
