"""A calibrated linear model over hashed features, stored as plain arrays.

Both content classifiers (spam, and the social-engineering language model)
are one weight per hashed feature plus an intercept. A message's features
are its strings (``content.features``), counted, log-scaled and hashed into
``N_FEATURES`` buckets with sklearn's MurmurHash3; a model may weight
groups of features (the words a reader sees, the headers, the structure):
each group is first L2-normalised on its own and scaled by its weight, so
that a message with fifty Received lines does not drown its text. The row
is then L2-normalised, and the raw score is its dot product with the
weights. A Platt calibration fitted on held-out scores turns it into a
probability that means what it says. The file is a NumPy ``.npz`` read
with ``allow_pickle=False``: a model file cannot run code.

Training hashes many messages at once (``vectorize``, sklearn's
``FeatureHasher``); a gateway scores one message at a time (``row``),
which hashes the same strings with the same function through a bounded
cache and gives the very same numbers without the batch machinery.

Learning from one message (``update``) is a passive-aggressive step: when
the message is not yet on its label's side by ``margin``, the weights of
its own features (or of those of some groups) move just far enough to put
it there, never more than ``max_step``. The change touches only that message's features, so it is
stored and can be subtracted again exactly (``revert``).
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.preprocessing import normalize
from sklearn.utils import murmurhash3_32

from mailward.content.features import GROUPS, token_group

N_FEATURES = 2**20
_HASHER = FeatureHasher(n_features=N_FEATURES, input_type="pair", alternate_sign=False)
# Strings already hashed: bucket << 3 | group. Bounded: emptied when the
# strings of a message would overfill it (one message's are far fewer), so
# hostile mail full of fresh strings costs time, never memory.
_CODES: dict[str, int] = {}
_CODES_MAX = 1 << 18
_GROUP_BITS = 3
# sklearn's bucket of the one int32 that abs() cannot make positive.
_MIN_INT32_BUCKET = (2**31 - 1 - (N_FEATURES - 1)) % N_FEATURES
assert len(GROUPS) <= 1 << _GROUP_BITS

Weights = Sequence[float] | None


def _codes(keys: list[str]) -> np.ndarray:
    """_codes - bucket and group of each string; the bucket is FeatureHasher's."""
    known = list(map(_CODES.get, keys))
    if None in known:
        fresh = [key for key, code in zip(keys, known) if code is None]
        signed = np.fromiter(map(murmurhash3_32, fresh), np.int64, len(fresh))
        # As sklearn's hasher: abs() of the int32, -2**31 mapped as it maps it.
        buckets = np.abs(signed) % N_FEATURES
        buckets[signed == -(2**31)] = _MIN_INT32_BUCKET
        group = np.fromiter(map(token_group, fresh), np.int64, len(fresh))
        made = (buckets << _GROUP_BITS | group).tolist()
        if len(_CODES) + len(fresh) > _CODES_MAX:
            _CODES.clear()
        _CODES.update(zip(fresh, made))
        new = iter(made)
        known = [next(new) if code is None else code for code in known]
    return np.fromiter(known, np.int64, len(known))


def weighted(tokens: Iterable[str], groups: Weights = None
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """weighted - (strings, buckets, values) of one message before hashing.

    Each distinct string's value is log(1 + count); with group weights,
    each group's values are divided by the group's L2 norm and multiplied by
    its weight. Both the batch and the one-message path start from this.
    """
    keys, codes, values = _weighted_codes(tokens, groups)
    return keys, codes >> _GROUP_BITS, values


def _weighted_codes(tokens: Iterable[str], groups: Weights
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """_weighted_codes - ``weighted`` with each string's bucket and group code."""
    counts = Counter(tokens)
    keys = list(counts)
    codes = _codes(keys)
    values = np.log1p(np.fromiter(counts.values(), np.float64, len(keys)))
    if groups is not None and len(keys):
        group = codes & ((1 << _GROUP_BITS) - 1)
        squares = np.bincount(group, values * values, minlength=1 << _GROUP_BITS)
        norms = np.sqrt(np.where(squares > 0, squares, 1.0))
        scale = np.zeros(1 << _GROUP_BITS)
        scale[:len(groups)] = np.asarray(groups, np.float64)
        values = values * (scale / norms)[group]
        kept = values != 0
        if not kept.all():
            keys = [k for k, keep in zip(keys, kept) if keep]
            codes, values = codes[kept], values[kept]
    return keys, codes, values


def vectorize(token_lists: Iterable[list[str]], groups: Weights = None) -> sparse.csr_matrix:
    """vectorize - the rows of many messages, hashed by sklearn's FeatureHasher."""
    pairs = []
    for tokens in token_lists:
        keys, _, values = weighted(tokens, groups)
        pairs.append(zip(keys, values.tolist()))
    matrix = _HASHER.transform(pairs).tocsr()
    return normalize(matrix, copy=False)


def row(tokens: Iterable[str], groups: Weights = None) -> tuple[np.ndarray, np.ndarray]:
    """row - (sorted buckets, values) of one message: ``vectorize``'s row, exactly."""
    buckets, values, _ = grouped_row(tokens, groups)
    return buckets, values


def grouped_row(tokens: Iterable[str], groups: Weights = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """grouped_row - ``row`` and the group of each bucket (of its first string).

    Colliding strings are summed, then the row is divided by its L2 norm
    summed in bucket order, as sklearn's ``normalize`` sums it.
    """
    _, codes, values = _weighted_codes(tokens, groups)
    buckets, group = codes >> _GROUP_BITS, codes & ((1 << _GROUP_BITS) - 1)
    if len(buckets) == 0:
        return buckets, values, group
    order = np.argsort(buckets, kind="stable")
    buckets, values, group = buckets[order], values[order], group[order]
    first = np.empty(len(buckets), bool)
    first[0] = True
    np.not_equal(buckets[1:], buckets[:-1], out=first[1:])
    if not first.all():
        starts = np.flatnonzero(first)
        buckets, values = buckets[starts], np.add.reduceat(values, starts)
        group = group[starts]
    total = float(np.cumsum(values * values)[-1])
    if total != 0.0:
        values = values / math.sqrt(total)
    return buckets, values, group


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


def calibrated_arrays(intercept: float, calibration: tuple[float, float],
                      meta: dict) -> dict[str, np.ndarray]:
    """calibrated_arrays - the arrays every model file holds besides its weights."""
    return {"intercept": np.array([intercept]),
            "calibration": np.array(calibration, dtype=np.float64),
            "meta": np.array(json.dumps(meta))}


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """write_arrays - a model file, written atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    temporary.replace(path)


def read_arrays(path: Path | str) -> dict[str, np.ndarray]:
    """read_arrays - the arrays of a model file, without pickle; ValueError if it is none."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(str(error)) from None


@dataclass
class LinearModel:
    """Weights over hashed features, an intercept, a calibration and group weights."""

    coef: np.ndarray
    intercept: float
    calibration: tuple[float, float] = (1.0, 0.0)
    meta: dict = field(default_factory=dict)
    groups: tuple[float, ...] | None = None

    def row(self, tokens: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """row - this model's (buckets, values) of one message."""
        return row(tokens, self.groups)

    def vectorize(self, token_lists: Iterable[list[str]]) -> sparse.csr_matrix:
        """vectorize - this model's rows of many messages."""
        return vectorize(token_lists, self.groups)

    def raw(self, tokens: Iterable[str]) -> float:
        """raw - the uncalibrated score (log-odds before calibration)."""
        return self.raw_row(*self.row(tokens))

    def raw_row(self, indices: np.ndarray, values: np.ndarray) -> float:
        """raw_row - the raw score of one row given as (buckets, values)."""
        return float(np.dot(self.coef[indices], values) + self.intercept)

    def raw_many(self, matrix: sparse.csr_matrix) -> np.ndarray:
        return matrix @ self.coef.astype(np.float64) + self.intercept

    def log_odds(self, raw: float) -> float:
        """log_odds - the calibrated log-odds of a raw score."""
        slope, offset = self.calibration
        return slope * raw + offset

    def probability(self, tokens: Iterable[str]) -> float:
        return sigmoid(self.log_odds(self.raw(tokens)))

    def update(self, tokens: list[str], label: int, margin: float = 2.0,
               max_step: float = 20.0, only: frozenset[int] | None = None) -> Update:
        """update - move this message to its label's side (1 positive, 0 negative).

        With ``only`` (indices of GROUPS), only the weights of those groups'
        features move, as far as needed to move the whole score the same.
        """
        indices, data, group = grouped_row(tokens, self.groups)
        before = self.raw_row(indices, data)
        target = margin if label else -margin
        gap = target - before
        if (label and gap <= 0) or (not label and gap >= 0) or len(indices) == 0:
            return Update(np.zeros(0, np.int64), np.zeros(0, np.float32), before, before)
        gap = max(-max_step, min(max_step, gap))
        direction = data
        if only is not None:
            kept = np.isin(group, list(only))
            if kept.any():
                indices, data, direction = indices[kept], data[kept], data[kept]
        # Adding gap * direction / (direction . row) moves the score by gap.
        values = (gap * direction / float(np.dot(direction, data))).astype(np.float32)
        self.coef[indices] += values
        return Update(indices.astype(np.int64), values, before,
                      self.raw(tokens))

    def revert(self, indices: np.ndarray, values: np.ndarray) -> None:
        """revert - subtract an earlier update."""
        self.coef[indices] -= values

    def save(self, path: Path) -> None:
        """save - write atomically (a reader never sees half a model)."""
        extra = {} if self.groups is None else {"groups": np.array(self.groups, np.float64)}
        write_arrays(path, coef=self.coef.astype(np.float32), **extra,
                     **calibrated_arrays(self.intercept, self.calibration, self.meta))

    @classmethod
    def load(cls, path: Path | str) -> "LinearModel":
        """load - read a model file; a wrong shape is an error that names the file."""
        try:
            data = read_arrays(path)
            coef = data["coef"].astype(np.float32)
            intercept = float(data["intercept"][0])
            calibration = (tuple(float(v) for v in data["calibration"])
                           if "calibration" in data else (1.0, 0.0))
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            groups = (tuple(float(v) for v in data["groups"]) if "groups" in data else None)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"{path}: not a model file ({error})") from None
        if coef.shape != (N_FEATURES,):
            raise ValueError(f"{path}: model has {coef.shape} weights, expected {N_FEATURES}")
        if groups is not None and (len(groups) > len(GROUPS)
                                   or not all(math.isfinite(g) and g >= 0 for g in groups)):
            raise ValueError(f"{path}: group weights {groups} are not {len(GROUPS)} "
                             "finite weights >= 0")
        return cls(coef, intercept, (calibration[0], calibration[1]), meta, groups)


def load_configured(path: Path, key: str, configured: str) -> LinearModel | None:
    """load_configured - the model file at path; None when there is none and the
    setting ``key`` (whose value is ``configured``) did not ask for one.

    An error names the setting when the file was configured."""
    if path.exists():
        try:
            return LinearModel.load(path)
        except ValueError as error:
            if configured:
                raise ValueError(f"{key}: {error}") from None
            raise
    if configured:
        raise ValueError(f"{key}: {path} does not exist")
    return None
