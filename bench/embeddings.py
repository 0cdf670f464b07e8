"""Would a sentence-embedding model add to the pipeline? Cross-validated on the training part.

Usage: .venv/bin/pip install wordllama && .venv/bin/python bench/embeddings.py [FOLDS_SALT]

The candidate is WordLlama's L2 "supercat" embedding (256 dimensions; its
weights ship inside the wheel, so it runs with no network, on the CPU). A
logistic regression reads the embedding of the text a reader sees (subject
and the bounded text prefix, ``content.language.reader_text``), against ham,
once for all unwanted mail and once for phishing alone.

Each message of the training part of the shared corpus split gets an
out-of-fold score from the whole pipeline (both models trained on the other
folds, as ``bench/accuracy.py`` trains them) and from the embedding
classifier (fitted on the same other folds). The script prints, per class,
the share caught at the threshold that keeps ham flagged at or below 0.1%:
the pipeline alone, the embedding classifier alone, and the pipeline with
the embedding's log-odds added at a few weights; then the embedding's CPU
cost per message. The held-out part is not read.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
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


def fold_of(path: Path, salt: str) -> int:
    return int.from_bytes(hashlib.sha256((salt + path.name).encode()).digest()[:4], "big") % FOLDS


def caught(scores: np.ndarray, labels: np.ndarray, kind: str) -> float:
    return float(np.mean(scores[labels == kind] > threshold_for(scores[labels == "ham"])))


def pipeline_scores(files: list[Path], labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """pipeline_scores - each file's whole-pipeline score from models trained without its fold."""
    import accuracy

    scores = np.zeros(len(files))
    for fold in range(FOLDS):
        train = {kind: [f for f, k, g in zip(files, labels, folds) if k == kind and g != fold]
                 for kind in ("ham", "spam", "phishing")}
        test_rows = {kind: [i for i, (k, g) in enumerate(zip(labels, folds))
                            if k == kind and g == fold] for kind in train}
        test = {kind: [files[i] for i in rows] for kind, rows in test_rows.items()}
        with tempfile.TemporaryDirectory() as data_dir:
            accuracy.train(Path(data_dir), train)
            result = asyncio.run(accuracy.judge_all(Path(data_dir), test))[0]
        for kind, rows in test_rows.items():
            scores[rows] = result.scores[kind]
        print(f"  pipeline fold {fold + 1}/{FOLDS} done", flush=True)
    return scores


def embeddings(files: list[Path]) -> tuple[np.ndarray, float]:
    """embeddings - each file's reader-text embedding, and the CPU seconds per message."""
    import wordllama
    from wordllama import WordLlama

    from mailward.content.language import reader_text
    from mailward.content.train import read_message

    model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    for handler in logging.getLogger().handlers[:]:  # wordllama's import logs everything
        logging.getLogger().removeHandler(handler)
    texts = [reader_text(read_message(path)) for path in files]
    started = time.process_time()
    vectors = np.array([model.embed([text])[0] for text in texts])
    return vectors, (time.process_time() - started) / len(files)


def embedding_scores(vectors: np.ndarray, positive: np.ndarray, folds: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    scores = np.zeros(len(positive))
    for fold in range(FOLDS):
        train = folds != fold
        model = LogisticRegression(C=1.0, max_iter=2000).fit(vectors[train], positive[train])
        scores[~train] = model.decision_function(vectors[~train])
    return scores


def main(salt: str) -> None:
    parts = split().train
    files = [path for kind in ("ham", "spam", "phishing") for path in parts[kind]]
    labels = np.array([kind for kind in ("ham", "spam", "phishing") for _ in parts[kind]])
    folds = np.array([fold_of(path, salt) for path in files])
    print(f"training part: {len(files)} messages, {FOLDS} folds (salt {salt!r})", flush=True)
    vectors, cpu = embeddings(files)
    pipeline = pipeline_scores(files, labels, folds)
    rows = [("pipeline alone", pipeline)]
    for target, positive in (("unwanted", labels != "ham"), ("phishing", labels == "phishing")):
        embedded = embedding_scores(vectors, positive, folds)
        rows.append((f"embedding alone ({target} vs ham)", embedded))
        rows += [(f"pipeline + {weight:g} x embedding ({target})",
                  pipeline + weight * np.clip(embedded, -10.0, 10.0)) for weight in WEIGHTS]
    print(f"{'out-of-fold, threshold for <= 0.1% ham':52} {'spam':>8} {'phishing':>9}")
    for name, scores in rows:
        print(f"{name:52} {caught(scores, labels, 'spam'):8.2%} "
              f"{caught(scores, labels, 'phishing'):9.2%}")
    print(f"embedding CPU per message: {cpu * 1000:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "a")
