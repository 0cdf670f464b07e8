"""A calibrated linear model over hashed features, stored as plain arrays.

Both content classifiers (spam, and the social-engineering language model)
are one weight per hashed feature plus an intercept. The raw score is the
dot product with the message's L2-normalised, log-scaled feature counts;
a Platt calibration fitted on held-out scores turns it into a probability
that means what it says. The file is a NumPy ``.npz`` read with
``allow_pickle=False``: a model file cannot run code.

Learning from one message (``update``) is a passive-aggressive step: when
the message is not yet on its label's side by ``margin``, the weights of
its own features move just far enough to put it there, never more than
``max_step``. The change touches only that message's features, so it is
stored and can be subtracted again exactly (``revert``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import normalize

N_FEATURES = 2**20
_HASHER = FeatureHasher(n_features=N_FEATURES, input_type="string", alternate_sign=False)


def vectorize(token_lists: Iterable[list[str]]) -> sparse.csr_matrix:
    """vectorize - hashed, log-scaled, L2-normalised token counts."""
    matrix = _HASHER.transform(token_lists).tocsr()
    matrix.data = np.log1p(matrix.data)
    return normalize(matrix, copy=False)


def sigmoid(value: float) -> float:
    value = max(-40.0, min(40.0, value))
    return 1.0 / (1.0 + math.exp(-value))


@dataclass(frozen=True, slots=True)
class Update:
    """The exact change one learnt message made to a model."""

    indices: np.ndarray
    values: np.ndarray
    before: float
    after: float


@dataclass
class LinearModel:
    """Weights over hashed features, an intercept and a calibration."""

    coef: np.ndarray
    intercept: float
    calibration: tuple[float, float] = (1.0, 0.0)
    meta: dict = field(default_factory=dict)

    def raw(self, tokens: list[str]) -> float:
        """raw - the uncalibrated score (log-odds before calibration)."""
        return self.raw_row(vectorize([tokens]))

    def raw_row(self, row: sparse.csr_matrix) -> float:
        return float(np.dot(self.coef[row.indices], row.data) + self.intercept)

    def raw_many(self, matrix: sparse.csr_matrix) -> np.ndarray:
        return matrix @ self.coef.astype(np.float64) + self.intercept

    def log_odds(self, raw: float) -> float:
        """log_odds - the calibrated log-odds of a raw score."""
        slope, offset = self.calibration
        return slope * raw + offset

    def probability(self, tokens: list[str]) -> float:
        return sigmoid(self.log_odds(self.raw(tokens)))

    def update(self, tokens: list[str], label: int, margin: float = 2.0,
               max_step: float = 20.0) -> Update:
        """update - move this message to its label's side (1 positive, 0 negative)."""
        row = vectorize([tokens])
        before = self.raw_row(row)
        target = margin if label else -margin
        gap = target - before
        if (label and gap <= 0) or (not label and gap >= 0) or row.nnz == 0:
            return Update(np.zeros(0, np.int64), np.zeros(0, np.float32), before, before)
        # ||row|| is 1, so adding gap*row to the weights moves the score by gap.
        gap = max(-max_step, min(max_step, gap))
        values = (gap * row.data).astype(np.float32)
        self.coef[row.indices] += values
        return Update(row.indices.astype(np.int64), values, before, self.raw_row(row))

    def revert(self, indices: np.ndarray, values: np.ndarray) -> None:
        """revert - subtract an earlier update."""
        self.coef[indices] -= values

    def save(self, path: Path) -> None:
        """save - write atomically (a reader never sees half a model)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(temporary, coef=self.coef.astype(np.float32),
                            intercept=np.array([self.intercept]),
                            calibration=np.array(self.calibration, dtype=np.float64),
                            meta=np.array(json.dumps(self.meta)))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> "LinearModel":
        """load - read a model file; a wrong shape is an error that names the file."""
        try:
            with np.load(path, allow_pickle=False) as data:
                coef = data["coef"].astype(np.float32)
                intercept = float(data["intercept"][0])
                calibration = (tuple(float(v) for v in data["calibration"])
                               if "calibration" in data.files else (1.0, 0.0))
                meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path}: not a model file ({error})") from None
        if coef.shape != (N_FEATURES,):
            raise ValueError(f"{path}: model has {coef.shape} weights, expected {N_FEATURES}")
        return cls(coef, intercept, (calibration[0], calibration[1]), meta)
