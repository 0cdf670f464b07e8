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
which hashes the same strings with the same function and gives the very
same numbers without the batch machinery. A message's strings are counted
and hashed once into a ``Bag``; the words both classifiers read are one
bag, joined to each classifier's other strings.

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

from mailward.content.features import GROUPS, Run, reading_runs, token_group
from mailward.message import Message

N_FEATURES = 2**20
_HASHER = FeatureHasher(n_features=N_FEATURES, input_type="pair", alternate_sign=False)
# sklearn's bucket of the one int32 that abs() cannot make positive.
_MIN_INT32_BUCKET = (2**31 - 1 - (N_FEATURES - 1)) % N_FEATURES

Weights = Sequence[float] | None

class Bag:
    """The distinct strings of one message: each string's count, bucket and group.

    Made from runs of strings whose group is known (``of_runs``), or from any
    strings, each grouped by its prefix (``of``). The keys are in the order
    of their first appearance, as ``Counter`` gives them; that order is what
    makes the one-message row sum colliding strings as the batch sums them.
    Two bags of distinct strings join with ``+`` (the strings of different
    groups are distinct: a string's prefix names its group), which is how
    the two classifiers share the hashing of the words they both read.
    """

    __slots__ = ("keys", "counts", "buckets", "groups")

    def __init__(self, keys: list[str], counts: np.ndarray, buckets: np.ndarray,
                 groups: np.ndarray) -> None:
        self.keys = keys
        self.counts = counts
        self.buckets = buckets
        self.groups = groups

    @classmethod
    def of_runs(cls, runs: Iterable[Run]) -> "Bag":
        """of_runs - the bag of runs of strings, each run of one group."""
        keys: list[str] = []
        counts: list[int] = []
        sizes: list[int] = []
        names: list[int] = []
        for tokens, group in runs:
            counted = Counter(tokens)
            keys.extend(counted)
            counts.extend(counted.values())
            sizes.append(len(counted))
            names.append(group)
        return cls(keys, np.array(counts, np.float64), _buckets(keys),
                   np.repeat(np.array(names, np.int64), sizes))

    @classmethod
    def of(cls, tokens: Iterable[str]) -> "Bag":
        """of - the bag of any strings, each in the group its prefix names."""
        counted = Counter(tokens)
        keys = list(counted)
        return cls(keys, np.fromiter(counted.values(), np.float64, len(keys)), _buckets(keys),
                   np.fromiter(map(token_group, keys), np.int64, len(keys)))

    def __add__(self, other: "Bag") -> "Bag":
        return Bag(self.keys + other.keys, np.concatenate((self.counts, other.counts)),
                   np.concatenate((self.buckets, other.buckets)),
                   np.concatenate((self.groups, other.groups)))

    def __len__(self) -> int:
        return len(self.keys)


def reading_bag(scratch: dict, message: Message) -> Bag:
    """reading_bag - the bag of ``reading_runs``, made once per message judged.

    ``scratch`` is the judged message's scratch space (``Task.scratch``); the
    bag is kept there for the other classifier.
    """
    bag = scratch.get("reading_bag")
    if bag is None:
        bag = scratch["reading_bag"] = Bag.of_runs(reading_runs(message))
    return bag


def _buckets(keys: list[str]) -> np.ndarray:
    """_buckets - each string's bucket, as sklearn's FeatureHasher computes it."""
    signed = np.fromiter(map(murmurhash3_32, keys), np.int64, len(keys))
    # As sklearn's hasher: abs() of the int32, -2**31 mapped as it maps it.
    buckets = np.abs(signed) % N_FEATURES
    buckets[signed == -(2**31)] = _MIN_INT32_BUCKET
    return buckets


def _as_bag(tokens: "Iterable[str] | Bag") -> Bag:
    return tokens if isinstance(tokens, Bag) else Bag.of(tokens)


def weighted(tokens: "Iterable[str] | Bag", groups: Weights = None
             ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """weighted - (strings, buckets, values, groups) of one message before summing.

    Each distinct string's value is log(1 + count); with group weights,
    each group's values are divided by the group's L2 norm and multiplied by
    its weight, and the strings of groups weighted 0 are left out. Both the
    batch and the one-message path start from this.
    """
    bag = _as_bag(tokens)
    keys, buckets, group = bag.keys, bag.buckets, bag.groups
    values = np.log1p(bag.counts)
    if groups is not None and len(keys):
        squares = np.bincount(group, values * values, minlength=len(GROUPS))
        norms = np.sqrt(np.where(squares > 0, squares, 1.0))
        scale = np.zeros(len(squares))
        scale[:len(groups)] = np.asarray(groups, np.float64)
        values = values * (scale / norms)[group]
        kept = values != 0
        if not kept.all():
            keys = [k for k, keep in zip(keys, kept) if keep]
            buckets, values, group = buckets[kept], values[kept], group[kept]
    return keys, buckets, values, group


def vectorize(token_lists: Iterable["list[str] | Bag"], groups: Weights = None
              ) -> sparse.csr_matrix:
    """vectorize - the rows of many messages, hashed by sklearn's FeatureHasher."""
    pairs = []
    for tokens in token_lists:
        keys, _, values, _ = weighted(tokens, groups)
        pairs.append(zip(keys, values.tolist()))
    matrix = _HASHER.transform(pairs).tocsr()
    return normalize(matrix, copy=False)


def row(tokens: "Iterable[str] | Bag", groups: Weights = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """row - (sorted buckets, values) of one message: ``vectorize``'s row, exactly."""
    buckets, values, _ = grouped_row(tokens, groups)
    return buckets, values


def grouped_row(tokens: "Iterable[str] | Bag", groups: Weights = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """grouped_row - ``row`` and the group of each bucket (of its first string).

    Colliding strings are summed, then the row is divided by its L2 norm
    summed in bucket order, as sklearn's ``normalize`` sums it.
    """
    _, buckets, values, group = weighted(tokens, groups)
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

    def row(self, tokens: "Iterable[str] | Bag") -> tuple[np.ndarray, np.ndarray]:
        """row - this model's (buckets, values) of one message."""
        return row(tokens, self.groups)

    def vectorize(self, token_lists: Iterable[list[str]]) -> sparse.csr_matrix:
        """vectorize - this model's rows of many messages."""
        return vectorize(token_lists, self.groups)

    def raw(self, tokens: "Iterable[str] | Bag") -> float:
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

    def update(self, tokens: "list[str] | Bag", label: int, margin: float = 2.0,
               max_step: float = 20.0, only: frozenset[int] | None = None) -> Update:
        """update - move this message to its label's side (1 positive, 0 negative).

        With ``only`` (indices of GROUPS), only the weights of those groups'
        features move, as far as needed to move the whole score the same.
        """
        tokens = _as_bag(tokens)
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
