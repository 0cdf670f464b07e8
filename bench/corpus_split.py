"""The deterministic split of the shared corpus that the accuracy benchmarks use.

Every file of ``corpus/spam/ham``, ``corpus/spam/spam`` and
``corpus/phishing`` goes to the held-out part when the first four bytes of
the SHA-256 of its name, read as a fraction, fall below ``TEST_SHARE``. The
same file always lands on the same side, for us and for the peers.

Every system reads the messages as the MX received them: the Received
headers the corpus collectors' own servers added on top (``INTERNAL_HOSTS``,
as ``content.features.internal_hops`` counts them) are taken off, in copies
kept under the temporary directory (``mx_copy``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
TEST_SHARE = 0.4
# The hosts that received and stored the corpus's mail: the collectors' MX,
# relays and mailbox servers (SpamAssassin's public corpus; the Microsoft 365
# mailbox of the phishing honeypot). Their Received headers top every file of
# a folder and never reach a gateway at the MX; a system that reads them
# learns which collector gathered a file (mailward's held-out spam figure was
# about four points higher with them).
INTERNAL_HOSTS = ("localhost", "localdomain", "slashnull.org", "netnoteinc.com",
                  "jmason.org", "webnote.net", "taint.org", "zzzzason.org", "outlook.com",
                  "office365.com")
_RECEIVED = re.compile(rb"received[ \t]*:", re.I)


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
    copies = Path(tempfile.gettempdir()) / f"mailward-bench-corpus-{_version()}"
    for name, folder in folders.items():
        files = [mx_copy(path, copies / name) for path in message_files([folder])]
        train[name] = [p for p in files if not in_test(p)]
        test[name] = [p for p in files if in_test(p)]
    return Split(train, test)


def _version() -> str:
    """_version - what the copies depend on: the host list and this file."""
    return hashlib.sha256(repr(INTERNAL_HOSTS).encode()
                          + Path(__file__).read_bytes()).hexdigest()[:12]


def at_the_mx(raw: bytes) -> bytes:
    """at_the_mx - the message without the Received headers the collectors added on top."""
    from mailward.content.features import internal_hops
    from mailward.message import Message

    drop = internal_hops(Message(raw), INTERNAL_HOSTS)
    if drop == 0:
        return raw
    lines = raw.splitlines(keepends=True)
    kept, index, dropping = [], 0, False
    for index, line in enumerate(lines):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = drop > 0 and _RECEIVED.match(line) is not None
        if dropping:
            drop -= 1
        else:
            kept.append(line)
    else:
        index = len(lines)
    return b"".join(kept + lines[index:])


def mx_copy(path: Path, folder: Path) -> Path:
    """mx_copy - the file's copy as the MX received it (made once, then reused)."""
    copy = folder / path.name
    if not copy.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(".partial")
        partial.write_bytes(at_the_mx(path.read_bytes()))
        partial.replace(copy)
    return copy
