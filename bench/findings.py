"""What the pipeline finds on a fixed sample of the corpus, to compare two versions.

Usage: .venv/bin/python bench/findings.py dump OUT.json [PER_FOLDER]   (default 300)
       .venv/bin/python bench/findings.py compare A.json B.json

``dump`` judges the same messages every time (PER_FOLDER from each of
corpus/spam/ham, corpus/spam/spam and corpus/phishing, picked by a fixed
seed) with the embedded defaults, DNS going to a local server that knows no
names, and writes each message's action, score, findings (symbol,
category, evidence, weight, data) and added headers. ``compare`` prints how
many messages two dumps share and on how many they differ, and the first
differences. A change meant only to make judging faster must give 0.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan import ROOT, dns_server  # noqa: E402

FOLDERS = ("corpus/spam/ham", "corpus/spam/spam", "corpus/phishing")


def sample(per_folder: int) -> list[Path]:
    """sample - the same per_folder messages of each folder, every run."""
    chosen = []
    for folder in FOLDERS:
        files = sorted(p for p in (ROOT.parent / "shared" / folder).iterdir()
                       if p.is_file() and p.suffix not in (".md", ".tsv"))
        random.Random(7).shuffle(files)
        chosen += files[:per_folder]
    return chosen


async def dump(out: Path, per_folder: int) -> None:
    """dump - judge the sample and write what was found, by file name."""
    from mailward.cli import scan_envelope
    from mailward.config import load_settings
    from mailward.envelope import Envelope
    from mailward.gateway import Gateway

    found = {}
    with tempfile.TemporaryDirectory() as data_dir, dns_server() as nameserver:
        gateway = Gateway(load_settings(overrides={"storage.data_dir": data_dir,
                                                   "dns.nameservers": [nameserver]}))
        await gateway.start()
        for path in sample(per_folder):
            raw = path.read_bytes()
            seen = scan_envelope(raw)
            envelope = Envelope(queue_id="Q", mail_from=seen.mail_from, rcpt_to=seen.rcpt_to)
            _, verdict, task = await gateway.judge(envelope, raw)
            found[f"{path.parent.name}/{path.name}"] = {
                "action": str(verdict.action), "score": round(verdict.score, 6),
                "findings": [[f.symbol, str(f.category), f.detail, f.weight,
                              repr(sorted(f.data.items()))] for f in task.findings],
                "headers": verdict.headers}
        await gateway.close()
    out.write_text(json.dumps(found, indent=0, sort_keys=True, default=str))
    print(f"messages: {len(found)} written to {out}")


def compare(first: Path, second: Path) -> None:
    """compare - messages in both dumps, and those judged differently."""
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    shared = sorted(set(a) & set(b))
    differ = [name for name in shared if a[name] != b[name]]
    print(f"messages in both: {len(shared)}")
    print(f"judged differently: {len(differ)}")
    for name in differ[:5]:
        print(f"  {name}: {a[name]['action']} {a[name]['score']} -> "
              f"{b[name]['action']} {b[name]['score']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["dump"]:
        asyncio.run(dump(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 300))
    elif sys.argv[1:2] == ["compare"]:
        compare(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
