"""Would a sentence-embedding model add to the pipeline? Cross-validated on the training part.

Usage: .venv/bin/pip install -e '.[embeddings]' && .venv/bin/python bench/embeddings.py [FOLDS_SALT]

The candidate is WordLlama's L2 "supercat" embedding (256 dimensions; its
weights ship inside the wheel, so it runs with no network, on the CPU). A
logistic regression reads the embedding of the text a reader sees (subject
and the bounded text prefix, ``content.language.reader_text``): all unwanted
mail against ham, and phishing against ham and spam.

Each message of the training part of the shared corpus split gets an
out-of-fold score from the whole pipeline (both models trained on the other
folds, as ``bench/accuracy.py`` trains them) and from the embedding
classifier (fitted on the same other folds). The script prints, per class,
the share caught at the threshold that keeps ham flagged at or below 0.1%:
the pipeline alone, the embedding classifier alone, and the pipeline with
the embedding's log-odds added at a few weights; then the pipeline with the
LANG_EMBED_PHISH finding added as the gateway scores it (the calibrated,
clipped log-odds of the model ``mailward train`` fits, times a symbol
score, the shipped one marked), for the model trained against ham (as
shipped) and against ham and spam; then the embedding's CPU cost per
message. The held-out part is not read; the symbol score is chosen here.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_split import split  # noqa: E402
from figures import threshold_for  # noqa: E402

FOLDS = 5
WEIGHTS = (0.5, 1.0, 2.0, 3.0, 4.0)
# Scores of the LANG_EMBED_PHISH symbol tried (per unit of calibrated log-odds).
SYMBOL_SCORES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
CACHE = Path(tempfile.gettempdir()) / "mailward-bench-embeddings"


def fold_of(path: Path, salt: str) -> int:
    return int.from_bytes(hashlib.sha256((salt + path.name).encode()).digest()[:4], "big") % FOLDS


def caught(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
    return float(np.mean(scores[labels == kind] > threshold_for(scores[labels == "ham"])))


def pipeline_scores(files: list[Path], labels: np.ndarray, folds: np.ndarray,
                    salt: str) -> np.ndarray:
    """pipeline_scores - each file's whole-pipeline score from models trained without its fold.

    The pipeline is the one without the embedding model (it is added here,
    at each weight). They are kept in CACHE, by salt and file paths, so a
    second run reuses them; delete CACHE when the pipeline changed.
    """
    import accuracy

    digest = hashlib.sha256("\n".join([salt] + [str(p) for p in files]).encode())
    cached = CACHE / f"pipeline-{digest.hexdigest()[:16]}.npy"
    if cached.exists():
        print(f"  pipeline scores from {cached}", flush=True)
        return np.load(cached)
    scores = np.zeros(len(files))
    for fold in range(FOLDS):
        train = {kind: [f for f, k, g in zip(files, labels, folds) if k == kind and g != fold]
                 for kind in ("ham", "spam", "phishing")}
        test_rows = {kind: [i for i, (k, g) in enumerate(zip(labels, folds))
                            if k == kind and g == fold] for kind in train}
        test = {kind: [files[i] for i in rows] for kind, rows in test_rows.items()}
        with tempfile.TemporaryDirectory() as data_dir:
            accuracy.train(Path(data_dir), train, embedding=False)
            result = asyncio.run(accuracy.judge_all(Path(data_dir), test))[0]
        for kind, rows in test_rows.items():
            scores[rows] = result.scores[kind]
        print(f"  pipeline fold {fold + 1}/{FOLDS} done", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, scores)
    return scores


def embeddings(files: list[Path]) -> tuple[np.ndarray, float]:
    """embeddings - each file's reader-text embedding, and the CPU seconds per message.

    The embedder and the text are the check's (``content.embedding``); they
    are embedded one message at a time, as the check does, to time it.
    """
    from mailward.content.embedding import Embedder, message_text
    from mailward.content.train import read_message

    digest = hashlib.sha256("\n".join(str(p) for p in files).encode()).hexdigest()[:16]
    cached = CACHE / f"vectors-{digest}.npz"
    if cached.exists():
        print(f"  embeddings from {cached}", flush=True)
        with np.load(cached) as data:
            return data["vectors"], float(data["cpu"])
    embedder = Embedder.shared()
    texts = [message_text(read_message(path)) for path in files]
    started = time.process_time()
    vectors = np.vstack([embedder.embed([text]) for text in texts])
    cpu = (time.process_time() - started) / len(files)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, vectors=vectors, cpu=np.array(cpu))
    return vectors, cpu


def embedding_scores(vectors: np.ndarray, positive: np.ndarray, folds: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    scores = np.zeros(len(positive))
    for fold in range(FOLDS):
        train = folds != fold
        model = LogisticRegression(C=1.0, max_iter=2000).fit(vectors[train], positive[train])
        scores[~train] = model.decision_function(vectors[~train])
    return scores


def shipped_log_odds(vectors: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                     negatives: tuple[str, ...]) -> np.ndarray:
    """shipped_log_odds - out-of-fold LANG_EMBED_PHISH weights: the calibrated,
    clipped log-odds of the model ``mailward train`` fits (``fit_model``),
    phishing against the given negatives, fitted on the other folds."""
    from mailward.content.embedding import fit_model

    scores = np.zeros(len(labels))
    for fold in range(FOLDS):
        train = (folds != fold) & np.isin(labels, ("phishing",) + negatives)
        model = fit_model(vectors[train], (labels[train] == "phishing").astype(int), {})
        scores[folds == fold] = model.log_odds(vectors[folds == fold])
    return scores


def main(salt: str) -> None:
    parts = split().train
    files = [path for kind in ("ham", "spam", "phishing") for path in parts[kind]]
    labels = np.array([kind for kind in ("ham", "spam", "phishing") for _ in parts[kind]])
    folds = np.array([fold_of(path, salt) for path in files])
    print(f"training part: {len(files)} messages, {FOLDS} folds (salt {salt!r})", flush=True)
    vectors, cpu = embeddings(files)
    pipeline = pipeline_scores(files, labels, folds, salt)
    rows = [("pipeline alone", pipeline)]
    for target, positive in (("unwanted vs ham", labels != "ham"),
                             ("phishing vs ham and spam", labels == "phishing")):
        embedded = embedding_scores(vectors, positive, folds)
        rows.append((f"embedding alone ({target})", embedded))
        rows += [(f"pipeline + {weight:g} x embedding ({target})",
                  pipeline + weight * np.clip(embedded, -10.0, 10.0)) for weight in WEIGHTS]
    from mailward.policy import load_scores

    shipped = load_scores().rule("LANG_EMBED_PHISH").score
    for negatives in (("ham",), ("ham", "spam")):
        log_odds = shipped_log_odds(vectors, labels, folds, negatives)
        against = " and ".join(negatives)
        rows += [(f"pipeline + {score:g} x LANG_EMBED_PHISH (vs {against})"
                  + (" shipped" if score == shipped and negatives == ("ham",) else ""),
                  pipeline + score * log_odds)
                 for score in sorted(set(SYMBOL_SCORES) | {shipped})]
    print(f"{'out-of-fold, threshold for <= 0.1% ham':60} {'spam':>8} {'phishing':>9}")
    for name, scores in rows:
        print(f"{name:60} {caught(scores, labels, 'spam'):8.2%} "
              f"{caught(scores, labels, 'phishing'):9.2%}")
    print(f"embedding CPU per message: {cpu * 1000:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "a")
