"""Rewriting throughput: messages per second on one core over the phishing corpus.

Each message is parsed, its URLs extracted, and its delivered copy rendered
with every link rewritten for one recipient (what the delivery queue does per
recipient). The process is pinned to one core. Prints messages per second
and links rewritten, best of the runs.

    .venv/bin/python bench/url_rewrite.py [--runs 3] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailward import actions  # noqa: E402
from mailward.message import Message  # noqa: E402
from mailward.urls.rewrite import CopyRewriter  # noqa: E402
from mailward.urls.signing import KeyRing, Signer  # noqa: E402
from mailward.verdict import Action, Verdict  # noqa: E402


def crlf(data: bytes) -> bytes:
    if data.startswith(b"From ") and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def one_pass(messages: list[bytes], signer: Signer) -> tuple[float, int, int]:
    verdict = Verdict(action=Action.DELIVER, score=0.0, reason="", findings=[], categories={})
    links = urls = 0
    started = time.process_time()
    for number, raw in enumerate(messages):
        message = Message(raw)
        urls += len(message.urls)
        rewriter = CopyRewriter(signer, f"q{number}", "user@example.com", [])
        actions.render(message, verdict, f"q{number}", external_text="", suspicious_text="",
                       rewrite=rewriter.part)
        links += rewriter.count
    return time.process_time() - started, links, urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/corpus/phishing"))
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    messages = [crlf(p.read_bytes()) for p in sorted(Path(args.corpus).glob("*.eml"))]
    keys = KeyRing(Path(tempfile.mkdtemp()) / "keys.json")
    keys.load()
    signer = Signer(keys, "https://mx.example.com")
    results = [one_pass(messages, signer) for _ in range(args.runs)]
    for seconds, links, urls in results:
        print(f"run: {len(messages) / seconds:8.1f} msgs/s  {seconds * 1000 / len(messages):6.2f} "
              f"ms CPU/msg  ({links} links rewritten, {urls} URLs extracted)")
    best = min(r[0] for r in results)
    print(f"\nrewriting throughput (one core, {len(messages)} messages of {args.corpus}): "
          f"{len(messages) / best:.1f} msgs/s, best of {args.runs}")


if __name__ == "__main__":
    main()
