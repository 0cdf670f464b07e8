"""Training the content classifiers from folders of ham, spam and phishing.

The messages are split by a hash of their file name (so a re-run splits the
same way); the model is fitted on one part and measured on the other, which
it never sees, so that the next training can score its model and this one
on the same held-out messages and keep the better (``compare``). A model
records the folders it was trained from, and the comparison reads their
held-out part too, under the kind this model learnt each message as: a
folder left out, or given as the other kind, then shows. The fit is a logistic
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


def quality_of(odds: np.ndarray, labels: np.ndarray, positive_name: str,
               negative_name: str = "ham") -> Quality | None:
    """quality_of - how calibrated log-odds sort these messages (labels 1 positive).

    A message is flagged at p >= 0.5 when its log-odds are >= 0.
    """
    negative, positive = odds[labels == 0], odds[labels == 1]
    if len(negative) == 0 or len(positive) == 0:
        return None
    return Quality(len(negative), len(positive), float(roc_auc_score(labels, odds)),
                   float(np.mean(positive >= 0)), float(np.mean(negative >= 0)),
                   tpr_at_fpr(negative, positive, 0.001)[0], positive_name, negative_name)


def log_odds_of(model: LinearModel, token_lists: list[list[str]]) -> np.ndarray:
    """log_odds_of - a model's calibrated log-odds of many messages."""
    if not token_lists:
        return np.zeros(0)
    slope, offset = model.calibration
    return slope * model.raw_many(model.vectorize(token_lists)) + offset


def build(token_lists: list[list[str]], labels: np.ndarray, test: np.ndarray | None,
          positive_name: str, meta: dict,
          step: Callable[[str], None] = lambda what: None,
          groups: tuple[float, ...] | None = None,
          negative_name: str = "ham") -> tuple[LinearModel, Quality | None]:
    """build - fit and calibrate without the held-out rows, then score them.

    The held-out rows are never fitted on, so that the next training can
    compare its model and this one on them, neither having seen them. When
    the rest lacks a class, the model is fitted on all and is not measured.
    """
    matrix = vectorize(token_lists, groups)
    if test is not None and (not test.any() or len(set(labels[~test])) < 2):
        test = None
    fitted = np.ones(len(labels), bool) if test is None else ~test
    step("fitting" if test is None else "fitting without the held-out part")
    coef, intercept = fit_linear(matrix[fitted], labels[fitted])
    step("calibrating")
    calibration = calibrate(matrix[fitted], labels[fitted])
    meta = dict(meta, trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
                **{negative_name.replace(" ", "_"): int((labels == 0).sum()),
                   positive_name: int((labels == 1).sum())},
                features=N_FEATURES)
    if test is None:
        meta["holdout"] = 0.0
    model = LinearModel(coef, intercept, calibration, meta, groups)
    quality = None
    if test is not None:
        step("measuring on the held-out part")
        rows = [tokens for tokens, held in zip(token_lists, test) if held]
        quality = quality_of(log_odds_of(model, rows), labels[test], positive_name,
                             negative_name)
    if quality is not None:
        meta["held_out"] = dict(quality.rows())
    return model, quality


# A new model is measurably worse than the live one when, on the same held-out
# messages, it catches fewer positives at <= 0.1% of negatives flagged, or flags
# more negatives at p >= 0.5, by more than this share of them or more than one
# message, whichever is larger: a message either way is noise on a small part.
SLACK_SHARE = 0.01
KINDS = ("ham", "spam", "phishing")


@dataclass
class Comparison:
    """The new model and the live one, scored on the same held-out messages."""

    new: Quality | None
    live: Quality | None
    share: float
    relabelled: int = 0
    live_saw_them: bool = False

    def worse(self) -> list[str]:
        """worse - how the new model is measurably worse than the live one."""
        new, live = self.new, self.live
        if new is None or live is None:
            return []
        name, other = new.positive_name, new.negative_name
        reasons = []
        slack = max(1 / new.positive, SLACK_SHARE)
        if new.caught_at_fp_01 < live.caught_at_fp_01 - slack - 1e-9:
            reasons.append(f"catches {new.caught_at_fp_01:.2%} of {name} with {other} "
                           f"flagged <= 0.1% (live: {live.caught_at_fp_01:.2%})")
        slack = max(1 / new.negative, SLACK_SHARE)
        if new.flagged_at_half > live.flagged_at_half + slack + 1e-9:
            reasons.append(f"flags {new.flagged_at_half:.2%} of {other} at p >= 0.5 "
                           f"(live: {live.flagged_at_half:.2%})")
        return reasons


@dataclass
class Trained:
    """A trained model, how it did on held-out mail, and against the live one."""

    kind: str
    model: LinearModel
    quality: Quality | None
    comparison: Comparison | None = None


def trained_from(meta: dict) -> list[tuple[Path, int]]:
    """trained_from - the message files a model's meta records it was trained from
    (0 ham, 1 spam, 2 phishing), those still there."""
    recorded = meta.get("trained_from")
    if not isinstance(recorded, dict):
        return []
    found: list[tuple[Path, int]] = []
    for code, kind in enumerate(KINDS):
        paths = recorded.get(kind)
        if isinstance(paths, list):
            found += [(p, code) for p in message_files(Path(str(q)) for q in paths)]
    return found


def _digest(path: Path) -> bytes:
    """_digest - what makes two message files the same message: their bytes."""
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(MAX_FILE)).digest()


def comparison_files(live: Iterable[dict], files: Iterable[Path]
                     ) -> list[tuple[Path, int]]:
    """comparison_files - the files the live models (their meta) were trained from
    that are not among these files.

    A copy of one of these files elsewhere (the same bytes) is the same message:
    counted twice it would weigh twice in the comparison.
    """
    files = list(files)
    seen = {path.resolve() for path in files}
    extra: list[tuple[Path, int]] = []
    for meta in live:
        for path, code in trained_from(meta):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                extra.append((path, code))
    if not extra:
        return extra
    # Only the names of one held-out part can meet (held_out goes by the name).
    names = {path.name for path, _ in extra}
    digests = {_digest(path) for path in files if path.name in names}
    kept: list[tuple[Path, int]] = []
    for path, code in extra:
        digest = _digest(path)
        if digest not in digests:
            digests.add(digest)
            kept.append((path, code))
    return kept


def compare(new: Callable[[list[int]], np.ndarray], live: Callable[[list[int]], np.ndarray],
            live_meta: dict, files: list[tuple[Path, int]], given: int, holdout: float,
            positive: Callable[[int], bool], not_compared: set[Path],
            names: tuple[str, str]) -> Comparison:
    """compare - score both models on the messages held out from both.

    ``files`` are this training's messages (the first ``given``) and then the
    live model's own; ``new`` and ``live`` give each model's log-odds of the
    files at some indices. A message the live model was trained from under
    another kind is compared under that kind (a swapped folder shows as a
    worse model, not a better one); mail people judged is left out, since the
    live model learnt it one by one.
    """
    share = holdout
    live_share = live_meta.get("holdout")
    saw = not isinstance(live_share, (int, float)) or live_share <= 0
    if not saw:
        share = min(holdout, float(live_share))  # type: ignore[arg-type]
    # What the live model learnt each held-out message as, by its bytes: a copy of
    # a file in another folder is the same message.
    recorded = {_digest(path): code for path, code in trained_from(live_meta)
                if held_out(path, share)}
    picked: list[int] = []
    labels: list[int] = []
    relabelled = 0
    for number, (path, code) in enumerate(files):
        if path.resolve() in not_compared or not held_out(path, share):
            continue
        was = recorded.get(_digest(path), code)
        relabelled += number < given and positive(was) != positive(code)
        picked.append(number)
        labels.append(int(positive(was)))
    array = np.array(labels, dtype=int)
    if not picked:
        return Comparison(None, None, share, relabelled, saw)
    return Comparison(quality_of(new(picked), array, *names),
                      quality_of(live(picked), array, *names), share, relabelled, saw)


def train_models(ham: list[Path], spam: list[Path], phishing: list[Path], *,
                 holdout: float = 0.2, sources: str = "",
                 progress: Callable[[int], None] = lambda n: None,
                 step: Callable[[str], None] = lambda what: None,
                 settings: Settings | None = None,
                 origins: dict[str, list[Path]] | None = None,
                 live: dict[str, LinearModel] | None = None,
                 not_compared: Iterable[Path] = ()) -> list[Trained]:
    """train_models - the spam model (ham against spam and phishing) and,
    given phishing, the language model (phishing against ham and spam).

    The language model names phishing, not unwanted mail: its negatives are
    the spam too, so that an advertisement's language (which the spam model
    already weighs) does not count again as a phisher's.

    The findings that are features come from the checks as ``settings``
    (default: the embedded defaults) build them, as on the wire. ``origins``
    (files and folders by kind) are recorded in each model; a model in
    ``live`` (by kind) is compared with its successor on the held-out part
    of this training's files and of the files it records, less the files
    under ``not_compared``.
    """
    from mailward.content.features import GROUP_WEIGHTS, spam_tokens
    from mailward.content.language import find_cues, language_tokens, reader_text
    from mailward.content.spam import content_findings

    live = live or {}
    internal_hosts = (settings or load_settings()).spam.internal_hosts
    files = [(p, 0) for p in ham] + [(p, 1) for p in spam] + [(p, 2) for p in phishing]
    given = len(files)
    if holdout > 0:
        files += comparison_files([m.meta for m in live.values()],
                                  [path for path, _ in files])
    spam_rows: list[list[str]] = []
    language_rows: list[list[str]] = []
    for path, _ in files:
        message = read_message(path)
        findings = content_findings(message, settings)
        spam_rows.append(spam_tokens(message, findings, internal_hosts))
        if phishing:
            language_rows.append(language_tokens(message, find_cues(reader_text(message))))
        progress(1)
    kinds = np.array([kind for _, kind in files[:given]])
    test = (np.array([held_out(path, holdout) for path, _ in files[:given]])
            if holdout > 0 else None)
    meta: dict = {"sources": sources, "holdout": holdout}
    if origins is not None:
        meta["trained_from"] = {kind: [str(p.resolve()) for p in origins.get(kind, [])]
                                for kind in KINDS}
    skipped = {p.resolve() for p in message_files(not_compared)}
    results: list[Trained] = []
    if spam:
        step("spam model")
        model, quality = build(spam_rows[:given], (kinds > 0).astype(int), test, "spam",
                               dict(meta, kind="spam"), step, GROUP_WEIGHTS)
        results.append(Trained("spam", model, quality))
    if phishing:
        step("language model")
        other = "ham and spam" if spam else "ham"
        model, quality = build(language_rows[:given], (kinds == 2).astype(int), test,
                               "phishing", dict(meta, kind="language"), step,
                               negative_name=other)
        results.append(Trained("language", model, quality))
    for result in results:
        current = live.get(result.kind)
        if current is None or test is None or result.model.meta["holdout"] <= 0:
            continue
        step(f"comparing with the live {result.kind} model")
        if result.kind == "spam":
            rows, positive, names = spam_rows, lambda code: code > 0, ("spam", "ham")
        else:
            rows, positive = language_rows, lambda code: code == 2
            names = ("phishing", "ham and spam" if spam else "ham")

        def odds_of(model: LinearModel, rows=rows) -> Callable[[list[int]], np.ndarray]:
            return lambda picked: log_odds_of(model, [rows[n] for n in picked])

        result.comparison = compare(odds_of(result.model), odds_of(current), current.meta,
                                    files, given, holdout, positive, skipped, names)
    return results
