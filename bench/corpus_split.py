"""The deterministic split of the shared corpus that the accuracy benchmarks use.

Every file of ``corpus/spam/ham``, ``corpus/spam/spam`` and
``corpus/phishing`` goes to the held-out part when the first four bytes of
the SHA-256 of its name, read as a fraction, fall below ``TEST_SHARE``. The
same file always lands on the same side, for us and for the peers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
TEST_SHARE = 0.4
# The hosts that received and stored the corpus's mail: the collectors' MX,
# relays and mailbox servers (SpamAssassin's public corpus; the Microsoft 365
# mailbox of the phishing honeypot). Their Received headers top every file of
# a folder and never reach a gateway; the benchmarks pass them to mailward as
# ``spam.internal_hosts``, as a site names its own servers. (Read without
# them, the spam model learns which collector gathered a file: the held-out
# figures rose by about four points.)
INTERNAL_HOSTS = ["localhost", "localdomain", "slashnull.org", "netnoteinc.com",
                  "jmason.org", "webnote.net", "taint.org", "zzzzason.org", "outlook.com"]
CLASSES = ("ham", "spam", "phishing")


def in_test(path: Path) -> bool:
    digest = hashlib.sha256(path.name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < TEST_SHARE


@dataclass
class Split:
    train: dict[str, list[Path]]
    test: dict[str, list[Path]]

    def describe(self) -> str:
        return ("train " + ", ".join(f"{k} {len(v)}" for k, v in self.train.items())
                + "; held out " + ", ".join(f"{k} {len(v)}" for k, v in self.test.items()))


def split(corpus: Path = CORPUS) -> Split:
    """split - the training and held-out files of each class."""
    from mailward.content.train import message_files

    folders = {"ham": corpus / "spam" / "ham", "spam": corpus / "spam" / "spam",
               "phishing": corpus / "phishing"}
    train: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for name, folder in folders.items():
        files = message_files([folder])
        train[name] = [p for p in files if not in_test(p)]
        test[name] = [p for p in files if in_test(p)]
    return Split(train, test)
