"""CPU cost per message of the spam model's stage: its strings and its score.

Usage: .venv/bin/python bench/content_speed.py [--messages 300] [--profile]

Reads every n-th message of ``corpus/spam`` and ``corpus/phishing`` (about
``--messages`` in all), parses each and computes the findings the model
reads (``spam.content_findings``, outside the timing: other checks pay for
them, and they warm the message's lazy views), then times, pinned to one
CPU, what the spam check itself does per message: ``spam_tokens`` and the
model's score of them, and apart what the language check does without a
model: ``find_cues``. ``--profile`` prints the functions that cost most.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_split import CORPUS  # noqa: E402


def messages(count: int) -> list[Path]:
    """messages - about count files spread over ham, spam and phishing."""
    from mailward.content.train import message_files

    files = message_files([CORPUS / "spam", CORPUS / "phishing"])
    step = max(1, len(files) // count)
    return files[::step][:count]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from mailward.content.features import spam_tokens
    from mailward.content.language import find_cues, reader_text
    from mailward.content.spam import bundled_model, content_findings
    from mailward.content.train import read_message

    model = bundled_model()
    parsed = []
    for path in messages(options.messages):
        message = read_message(path)
        parsed.append((message, content_findings(message)))

    def stage() -> tuple[float, float]:
        tokens_cpu = score_cpu = 0.0
        for message, findings in parsed:
            started = time.process_time()
            tokens = spam_tokens(message, findings)
            middle = time.process_time()
            model.raw(tokens)
            tokens_cpu += middle - started
            score_cpu += time.process_time() - middle
        return tokens_cpu, score_cpu

    def cues() -> float:
        started = time.process_time()
        for message, _ in parsed:
            find_cues(reader_text(message))
        return time.process_time() - started

    stage()  # warm caches
    best = min((stage() for _ in range(options.rounds)), key=sum)
    cues_cpu = min(cues() for _ in range(options.rounds))
    count = len(parsed)
    print(f"{count} messages; CPU per message (best of {options.rounds} rounds): "
          f"spam_tokens {best[0] / count * 1000:.2f} ms, score {best[1] / count * 1000:.2f} ms, "
          f"content stage {sum(best) / count * 1000:.2f} ms; "
          f"language cues {cues_cpu / count * 1000:.2f} ms")
    if options.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        stage()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
