"""Learning from people's judgement, without a full retrain.

``learn`` is the one entry point for every kind of feedback: ``mailward
learn --spam|--ham FILE...``, a quarantine release marked "not spam", and
user reports. It moves the site's spam model just far enough that this
message falls on the side people said (``LinearModel.update``), through the
weights of what the message says, links to and carries, not of the header
shapes and relay words it shares with every message on its path; writes the
model back, keeps a copy of the message under ``feedback/<label>/`` in the
data directory for the next full ``mailward train``, and records the exact
change in a journal so that ``unlearn`` can take it back or a later
judgement can replace it.

SECURITY: the gateway never calls this on its own verdicts. A model that
learns from what it already believes drifts toward its own mistakes
(self-poisoning), and an attacker who can get a middling message through
could teach it; only a person's decision teaches.
"""

from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from mailward.content.features import LEARNT_GROUPS, spam_tokens
from mailward.content.model import sigmoid
from mailward.content.spam import content_findings, load_model, model_path
from mailward.message import Message
from mailward.services import Services
from mailward.smtp.spool import write_durable

Label = Literal["spam", "ham"]
_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Learnt:
    """What one call did to the model."""

    sha256: str
    label: str
    before: float
    after: float
    changed: bool
    note: str


def journal_dir(services: Services) -> Path:
    return services.data_dir / "spam-learn"


def feedback_dir(services: Services, label: str) -> Path:
    return services.data_dir / "feedback" / label


@contextmanager
def _locked(services: Services) -> Iterator[None]:
    """_locked - one learner at a time, in this process and across processes."""
    services.data_dir.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(services.data_dir / "spam-model.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _journal_entry(services: Services, sha256: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    path = journal_dir(services) / f"{sha256}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return str(data["label"]), data["indices"], data["values"]


def learn(services: Services, raw: bytes, label: Label, *, name: str | None = None) -> Learnt:
    """learn - teach the site's spam model that this message is spam or ham."""
    if label not in ("spam", "ham"):
        raise ValueError(f"label must be 'spam' or 'ham', not {label!r}")
    message = Message(raw)
    tokens = spam_tokens(message, content_findings(message, services.settings),
                         services.settings.spam.internal_hosts)
    with _locked(services):
        model = load_model(services)
        previous = _journal_entry(services, message.sha256)
        before = sigmoid(model.log_odds(model.raw(tokens)))
        if previous is not None and previous[0] == label:
            return Learnt(message.sha256, label, before, before, False, "already learnt")
        note = "learnt"
        if previous is not None:
            model.revert(previous[1], previous[2])
            note = f"was learnt as {previous[0]}; relearnt"
        update = model.update(tokens, 1 if label == "spam" else 0,
                              margin=services.settings.spam.learn_margin,
                              only=LEARNT_GROUPS)
        model.meta["learned"] = int(model.meta.get("learned", 0)) + 1
        model.save(model_path(services))
        journal = journal_dir(services)
        journal.mkdir(parents=True, exist_ok=True)
        np.savez(journal / f"{message.sha256}.npz", label=np.array(label),
                 indices=update.indices, values=update.values)
        copy = feedback_dir(services, label) / f"{name or message.sha256}.eml"
        copy.parent.mkdir(parents=True, exist_ok=True)
        write_durable(copy, raw)
        if previous is not None:
            other = feedback_dir(services, previous[0]) / f"{name or message.sha256}.eml"
            other.unlink(missing_ok=True)
        after = sigmoid(model.log_odds(update.after))
        return Learnt(message.sha256, label, before, after, True, note)


def unlearn(services: Services, raw: bytes) -> Learnt:
    """unlearn - take back exactly what learning this message changed."""
    message = Message(raw)
    tokens = spam_tokens(message, content_findings(message, services.settings),
                         services.settings.spam.internal_hosts)
    with _locked(services):
        model = load_model(services)
        before = sigmoid(model.log_odds(model.raw(tokens)))
        previous = _journal_entry(services, message.sha256)
        if previous is None:
            return Learnt(message.sha256, "", before, before, False, "was not learnt")
        model.revert(previous[1], previous[2])
        model.meta["learned"] = max(0, int(model.meta.get("learned", 0)) - 1)
        model.save(model_path(services))
        (journal_dir(services) / f"{message.sha256}.npz").unlink()
        (feedback_dir(services, previous[0]) / f"{message.sha256}.eml").unlink(missing_ok=True)
        after = sigmoid(model.log_odds(model.raw(tokens)))
        return Learnt(message.sha256, previous[0], before, after, True, "unlearnt")
