"""Impostor (BEC) detection figures: the generated impostor set and the corpus ham.

Every message goes through a real gateway in this process with every check
on (DNS answered from an empty zone, so no sender has aligned
authentication). It prints, for the generated impostor set, the share whose
impostor score reaches the quarantine threshold (and the tag threshold),
per kind; for the shared corpus ham, how many reach the impostor tag
threshold ("flagged"); and, for reference, the same for the spam and
phishing corpora, which are not impostor mail.

    .venv/bin/python bench/impostor.py [--per-kind N] [--ham-step K]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailward.policy import load_scores  # noqa: E402
from mailward.verdict import Action, Category  # noqa: E402
from tests.content.impostors import (  # noqa: E402
    ham_messages,
    impostor_set,
    judge_all,
    plain_spoofs,
)

CORPUS = ROOT.parent / "shared" / "corpus"


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} = {100 * hits / max(total, 1):.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-kind", type=int, default=60, help="impostors per kind")
    parser.add_argument("--ham-step", type=int, default=1, help="every K-th ham file")
    args = parser.parse_args()
    thresholds = load_scores().category_thresholds[Category.IMPOSTOR]
    tag, quarantine = thresholds[Action.TAG], thresholds[Action.QUARANTINE]
    work = Path(tempfile.mkdtemp(prefix="bench-impostor"))

    samples = impostor_set(args.per_kind)
    started = time.perf_counter()
    results = asyncio.run(judge_all(work / "set", [(s.raw, s.mail_from, s.recipient)
                                                   for s in samples]))
    elapsed = time.perf_counter() - started
    caught, tagged = collections.Counter(), collections.Counter()
    kinds = collections.Counter(s.kind for s in samples)
    for sample, (score, _) in zip(samples, results):
        caught[sample.kind] += score >= quarantine
        tagged[sample.kind] += score >= tag
    print(f"impostor set: {len(samples)} messages, {len(samples) / elapsed:.1f} msg/s")
    print(f"  caught (impostor score >= quarantine {quarantine:g}): "
          f"{rate(sum(caught.values()), len(samples))}")
    print(f"  at least tagged (>= {tag:g}): {rate(sum(tagged.values()), len(samples))}")
    for kind in kinds:
        print(f"    {kind:18} quarantine {rate(caught[kind], kinds[kind])}"
              f"   tag {rate(tagged[kind], kinds[kind])}")

    plain = plain_spoofs(args.per_kind)
    results = asyncio.run(judge_all(work / "plain", [(s.raw, s.mail_from, s.recipient)
                                                     for s in plain]))
    print(f"beyond the set, spoofs that ask for nothing: quarantine "
          f"{rate(sum(s >= quarantine for s, _ in results), len(plain))}, tag "
          f"{rate(sum(s >= tag for s, _ in results), len(plain))}")

    for label, folder, step in (("ham", CORPUS / "spam" / "ham", args.ham_step),
                                ("spam", CORPUS / "spam" / "spam", 1),
                                ("phishing", CORPUS / "phishing", 1)):
        paths = sorted(p for p in folder.iterdir() if p.is_file()
                       and p.name not in ("index.tsv", "README.md"))[::step]
        started = time.perf_counter()
        results = asyncio.run(judge_all(work / label, ham_messages(paths)))
        elapsed = time.perf_counter() - started
        flagged = [(p.name, s) for p, (s, _) in zip(paths, results) if s >= tag]
        quarantined = sum(1 for s, _ in results if s >= quarantine)
        print(f"{label} corpus: {len(paths)} messages, flagged as impostor (>= {tag:g}): "
              f"{rate(len(flagged), len(paths))}, at quarantine: "
              f"{rate(quarantined, len(paths))}, {len(paths) / elapsed:.1f} msg/s")
        if label == "ham":
            for name, score in flagged[:20]:
                print(f"    {name} impostor score {score:.1f}")
    with open("/proc/loadavg") as handle:
        print(f"loadavg: {handle.read().strip()}")


if __name__ == "__main__":
    main()
