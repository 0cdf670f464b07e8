"""The statistical spam model and its check.

Features are hashed tokens (no vocabulary to store): the words and word
pairs of the subject and of the text a reader sees, the names of the headers
present, the MIME structure, and the hosts of the URLs. A logistic model
over them gives a probability; its log-odds, clamped, weight the SPAM_MODEL
(or HAM_MODEL) symbol, so the scores file decides what a probability is
worth. The model is a few arrays in a NumPy ``.npz`` file: no pickle is
ever loaded, so a model file cannot run code.

It learns from feedback without a full retrain (``learn``): a few passes of
stochastic gradient descent starting from the current weights.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import ClassVar, Iterable

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import normalize

from mailward.message import Message
from mailward.pipeline import Stage, Task
from mailward.services import Services
from mailward.verdict import Category, Finding

N_FEATURES = 2**20
MAX_TEXT = 20_000
_WORD = re.compile(r"[^\W\d_][\w'$€£%-]{1,29}|\d[\d.,]*\d|[$€£]\d+")
_HASHER = FeatureHasher(n_features=N_FEATURES, input_type="string", alternate_sign=False)
_BUNDLED = "data/spam-model.npz"


def _bucket(value: int) -> str:
    return str(min(value.bit_length(), 8))


def tokens(message: Message) -> list[str]:
    """tokens - the features of a message, as strings to hash."""
    found: list[str] = []
    subject = message.subject.lower()
    words = _WORD.findall(subject)
    found.extend("s:" + w for w in words)
    text = message.text[:MAX_TEXT].lower()
    words = _WORD.findall(text)
    found.extend(words)
    found.extend(f"b:{a}_{b}" for a, b in zip(words, words[1:]))

    names = {name.lower() for name, _ in message.raw_headers}
    found.extend("hn:" + name for name in names if len(name) < 40)
    mailer = (message.header("x-mailer") or message.header("user-agent") or "").split()
    if mailer:
        found.append("hx:" + mailer[0].lower()[:30])
    found.append("ct:" + message.root.content_type)
    found.extend("pt:" + e.content_type for e in message.entities[1:50])
    found.extend("cs:" + e.charset for e in message.text_parts + message.html_parts)
    if message.html_parts and not message.text_parts:
        found.append("st:html_only")
    if message.hidden_text:
        found.append("st:hidden_text")
    found.append("st:urls_" + _bucket(len(message.urls)))
    found.append("st:len_" + _bucket(len(text) // 64))
    hosts = {u.host for u in message.urls}
    found.extend("u:" + ".".join(host.split(".")[-2:]) for host in hosts)
    for part in message.attachments:
        name = (part.filename or "").lower()
        found.append("at:" + (name.rsplit(".", 1)[-1][:10] if "." in name else part.content_type))
    found.extend("d:" + defect.split(":")[0] for defect in set(message.all_defects))
    if subject and sum(c.isupper() for c in message.subject) > 0.6 * len(subject.replace(" ", "")):
        found.append("st:subject_caps")
    return found


def vectorize(token_lists: Iterable[list[str]]) -> sparse.csr_matrix:
    """vectorize - hashed, L2-normalised, log-scaled token counts."""
    matrix = _HASHER.transform(token_lists).tocsr()
    matrix.data = np.log1p(matrix.data)
    return normalize(matrix, copy=False)


@dataclass
class SpamModel:
    """A linear model over hashed features; probability of spam."""

    coef: np.ndarray
    intercept: float
    meta: dict = field(default_factory=dict)

    def logit(self, message: Message) -> float:
        row = vectorize([tokens(message)])
        return float(np.dot(self.coef[row.indices], row.data) + self.intercept)

    def probability(self, message: Message) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(message)))

    def learn(self, messages: list[Message], labels: list[int], passes: int = 5) -> None:
        """learn - move the weights toward the given labels (1 spam, 0 ham)."""
        matrix = vectorize(tokens(m) for m in messages)
        sgd = SGDClassifier(loss="log_loss", alpha=1e-6, learning_rate="constant",
                            eta0=0.05, random_state=0)
        sgd.classes_ = np.array([0, 1])
        sgd.coef_ = self.coef.reshape(1, -1).astype(np.float64)
        sgd.intercept_ = np.array([self.intercept])
        sgd.t_ = 1.0
        sgd._expanded_class_weight = np.ones(2)
        for _ in range(passes):
            sgd.partial_fit(matrix, np.array(labels))
        self.coef = sgd.coef_.ravel().astype(np.float32)
        self.intercept = float(sgd.intercept_[0])
        self.meta["learned"] = int(self.meta.get("learned", 0)) + len(labels)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp.npz")
        np.savez_compressed(temporary, coef=self.coef.astype(np.float32),
                            intercept=np.array([self.intercept]),
                            meta=np.array(json.dumps(self.meta)))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path | str) -> "SpamModel":
        with np.load(path, allow_pickle=False) as data:
            coef = data["coef"].astype(np.float32)
            if coef.shape != (N_FEATURES,):
                raise ValueError(f"{path}: model has {coef.shape} weights, "
                                 f"expected {N_FEATURES}")
            return cls(coef, float(data["intercept"][0]), json.loads(str(data["meta"])))

    @classmethod
    def bundled(cls) -> "SpamModel":
        return cls.load(str(resources.files("mailward").joinpath(_BUNDLED)))


def model_path(services: Services) -> Path:
    """model_path - where the site's own model lives (trained or learnt)."""
    configured = services.settings.spam.model
    return Path(configured) if configured else services.data_dir / "spam-model.npz"


def load_model(services: Services) -> SpamModel:
    """load_model - the site's model if there is one, else the shipped one."""
    path = model_path(services)
    if path.exists():
        return SpamModel.load(path)
    if services.settings.spam.model:
        raise ValueError(f"spam.model: {path} does not exist")
    return SpamModel.bundled()


class SpamModelCheck:
    """Score the message by the spam model's probability."""

    name: ClassVar[str] = "spam_model"
    stage: ClassVar[Stage] = Stage.DATA
    after: ClassVar[tuple[str, ...]] = ()
    symbols: ClassVar[dict[str, str]] = {
        "SPAM_MODEL": "the spam model finds the message likely spam (weight: log-odds)",
        "HAM_MODEL": "the spam model finds the message likely legitimate (weight: log-odds)",
    }

    def __init__(self, model: SpamModel) -> None:
        self.model = model

    @classmethod
    def from_services(cls, services: Services) -> "SpamModelCheck":
        return cls(load_model(services))

    async def check(self, task: Task) -> list[Finding]:
        assert task.message is not None
        logit = max(-10.0, min(10.0, self.model.logit(task.message)))
        probability = 1.0 / (1.0 + math.exp(-logit))
        task.scratch["spam_probability"] = probability
        detail = f"spam probability {probability:.4f}"
        if logit > 0:
            return [Finding("SPAM_MODEL", Category.SPAM, detail, weight=logit)]
        return [Finding("HAM_MODEL", Category.SPAM, detail, weight=-logit)]
