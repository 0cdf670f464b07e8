"""Accuracy of mailward's content analysis on held-out mail of the shared corpus.

Usage: .venv/bin/python bench/accuracy.py [--misses] [--no-embedding]

Splits ``corpus/spam`` (ham, spam) and ``corpus/phishing`` deterministically
(``bench/corpus_split.py``; every message read as the MX received it, without
the Received headers the corpus collectors' servers added on top), trains the spam model (ham against spam and
phishing) and the language model (phishing against ham and spam) on the training
part as ``mailward train`` does (and the embedding model, phishing against ham,
when the embeddings extra is installed), then judges every held-out message with
the whole offline pipeline of the embedded defaults (the gateway's
``judge``, as ``mailward scan``), pinned to one CPU. Training and judging
both name the corpus collectors' servers as ``spam.internal_hosts``
(``corpus_split.INTERNAL_HOSTS``), as a site names its own. It prints, per class,
the share caught at the total-score threshold that keeps ham flagged at or
below 0.1%, the shares at the shipped policy thresholds (tag, quarantine),
the AUC against ham, and messages per second and CPU per message, with
the DNS cache warmed first by a pass of the checks that look up DNS
(``warm_dns``: DKIM, ARC, DMARC); then the same for the spam
model's own score in those verdicts. ``--no-embedding`` leaves the embedding
model out even when the extra is installed, for the default install's
figures. With ``--misses`` it then lists the
held-out spam and phishing that the whole pipeline misses at that threshold
and the ham that scored highest, for error analysis. Nothing here is
shipped: the models live in a temporary data directory.

Caveat on the corpus: its ham is mail of 2002-2003 and its phishing is
recent, so the era alone (header names, software) tells them apart; the
phishing figures flatter every system that reads headers, ours included.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_split import INTERNAL_HOSTS, split  # noqa: E402
from figures import Result, print_results  # noqa: E402


def train(data_dir: Path, parts: dict[str, list[Path]], embedding: bool = True) -> None:
    """train - the models into data_dir, as `mailward train` writes them.

    The embedding model too when ``embedding`` and the extra is installed.
    """
    from mailward.config import load_settings
    from mailward.content.train import train_models

    settings = load_settings(overrides={"spam.internal_hosts": INTERNAL_HOSTS})
    for result in train_models(parts["ham"], parts["spam"], parts["phishing"], holdout=0,
                               settings=settings):
        name = "spam-model.npz" if result.kind == "spam" else "language-model.npz"
        result.model.save(data_dir / name)
    if not embedding:
        return
    from mailward.content.embedding import EXTRA, available, train_embedding

    if available():
        print("training the embedding model too (the embeddings extra is installed)",
              flush=True)
        result = train_embedding(parts["ham"], parts["phishing"], holdout=0)
        result.model.save(data_dir / "embedding-model.npz")
    else:
        print(f"no embedding model: the embeddings extra is not installed ({EXTRA})",
              flush=True)


async def judge_all(data_dir: Path, parts: dict[str, list[Path]]) -> list[Result]:
    """judge_all - the verdict of every held-out message, timed."""
    from mailward.attachments.workers import shared_cpu_seconds
    from mailward.cli import scan_envelope
    from mailward.config import load_settings
    from mailward.gateway import Gateway
    from mailward.verdict import Action

    gateway = Gateway(load_settings(overrides={"storage.data_dir": str(data_dir),
                                               "spam.internal_hosts": INTERNAL_HOSTS}))
    await gateway.start()
    blobs = {name: [p.read_bytes() for p in files] for name, files in parts.items()}
    # Warm caches; a message with a file for the analysers starts their worker
    # process, whose start-up (it imports this script again) is no per-message cost.
    warm = blobs["ham"][:10] + analysed_file(blobs)
    for raw in warm:
        await gateway.judge(scan_envelope(raw), raw)
    await warm_dns(gateway, [raw for items in blobs.values() for raw in items])
    scores: dict[str, list[float]] = {name: [] for name in blobs}
    model: dict[str, list[float]] = {name: [] for name in blobs}
    plain: dict[str, list[float]] = {name: [] for name in blobs}
    tagged: dict[str, list[bool]] = {name: [] for name in blobs}
    held: dict[str, list[bool]] = {name: [] for name in blobs}
    MISSES.clear()
    # The envelope a message file stands for comes with the mail on the wire.
    envelopes = {name: [scan_envelope(raw) for raw in items] for name, items in blobs.items()}
    # The CPU of the analysers' worker processes is part of the pipeline's.
    cpu, wall = time.process_time() + shared_cpu_seconds(), time.perf_counter()
    for name, items in blobs.items():
        for raw, envelope in zip(items, envelopes[name]):
            _, verdict, _ = await gateway.judge(envelope, raw)
            scores[name].append(verdict.score)
            model[name].append(sum(f.score for f in verdict.findings
                                   if f.symbol in ("SPAM_MODEL", "HAM_MODEL")))
            plain[name].append(verdict.score - sum(f.score for f in verdict.findings
                                                   if f.symbol == "LANG_EMBED_PHISH"))
            tagged[name].append(verdict.action.rank >= Action.TAG.rank)
            held[name].append(verdict.action.rank >= Action.QUARANTINE.rank)
            MISSES.append((name, len(scores[name]) - 1, verdict.score, model[name][-1],
                           [f.symbol for f in verdict.findings if f.score > 0][:6]))
    wall = time.perf_counter() - wall
    cpu = time.process_time() + shared_cpu_seconds() - cpu
    await gateway.close()
    as_array = lambda table: {k: np.array(v) for k, v in table.items()}  # noqa: E731
    return [Result("mailward", as_array(scores),
                   {"shipped policy: tag or stricter": as_array(tagged),
                    "shipped policy: quarantine or stricter": as_array(held)},
                   wall, cpu, "(whole offline pipeline, one core, warm DNS cache)"),
            Result("mailward spam model alone", as_array(model),
                   note="(the SPAM_MODEL/HAM_MODEL score of the same verdicts)")] + (
            [Result("mailward less LANG_EMBED_PHISH", as_array(plain),
                    note="(the same verdicts' scores without the embedding model's)")]
            if any(s != p for k in scores for s, p in zip(scores[k], plain[k])) else [])


def analysed_file(blobs: dict[str, list[bytes]]) -> list[bytes]:
    """analysed_file - the first message carrying a file an analyser reads, if any."""
    from mailward.attachments.check import ANALYSERS
    from mailward.message import Message

    for items in blobs.values():
        for raw in items:
            if any(node.data and node.kind in ANALYSERS for node in Message(raw).files):
                return [raw]
    return []


# The checks that ask DNS of a message's data (keys, policies); SPF runs at MAIL
# FROM in an SMTP session, and a message read from a file has no client to check.
DNS_CHECKS = ("dkim", "arc", "dmarc")


async def warm_dns(gateway, raws: list[bytes]) -> None:
    """warm_dns - the DNS answers these messages ask for, in the gateway's cache.

    Only the checks that look up DNS run, with the gateway's own resolver,
    so the timed pass meets a warm DNS cache (as a gateway in service does
    for the domains it hears from), while the content classifiers' caches
    stay as cold as they were.
    """
    from mailward.cli import scan_envelope
    from mailward.pipeline import Stage, Task

    assert gateway.pipeline is not None
    checks = [c for wave in gateway.pipeline.waves[Stage.DATA] for c in wave
              if c.name in DNS_CHECKS]  # in the order the pipeline runs them
    for raw in raws:
        task = Task(envelope=scan_envelope(raw), services=gateway.services,
                    message=gateway.parse(raw))
        for check in checks:
            task.findings.extend(await check.check(task))


MISSES: list[tuple[str, int, float, float, list[str]]] = []


def print_misses(parts: dict[str, list[Path]], ham_scores: np.ndarray) -> None:
    """print_misses - missed spam and phishing at the <= 0.1% threshold, top ham."""
    from figures import threshold_for

    limit = threshold_for(ham_scores)
    rows = [row for row in MISSES if row[0] != "ham" and row[2] <= limit]
    rows += sorted((row for row in MISSES if row[0] == "ham"), key=lambda r: -r[2])[:5]
    print(f"missed at the threshold (score > {limit:.2f}), then the highest ham:")
    for name, number, score, model, symbols in rows:
        print(f"  {name:8} {parts[name][number].name[:44]:44} score {score:6.2f} "
              f"model {model:6.2f} {' '.join(symbols)}")


def evaluate(embedding: bool = True) -> list[Result]:
    """evaluate - train on the training part, judge the held-out part.

    Without ``embedding`` no embedding model is trained, as in the default
    install (the extra installed or not).
    """
    parts = split()
    print(parts.describe(), flush=True)
    with tempfile.TemporaryDirectory() as data_dir:
        started = time.perf_counter()
        train(Path(data_dir), parts.train, embedding)
        print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
        return asyncio.run(judge_all(Path(data_dir), parts.test))


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


if __name__ == "__main__":
    pin_one_core()
    results = evaluate(embedding="--no-embedding" not in sys.argv[1:])
    print_results(results)
    if "--misses" in sys.argv[1:]:
        print_misses(split().test, results[0].scores["ham"])
    print(f"load average: {open('/proc/loadavg').read().strip()}")
