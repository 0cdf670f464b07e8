"""Static attachment analysis throughput: files per second on one core.

Every file under the malware corpus (or the directory given) is unpacked
and analysed as an attachment, as the gateway does; the figure counts the
top-level files and, separately, every node of their trees. The analysers
run in one worker process, as the gateway runs them (``--in-process`` runs
them in this process instead); the CPU figure counts the worker's time too.

    .venv/bin/python bench/attachments_static.py [DIR] [--rounds N] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from mailward.attachments.check import AttachmentCheck, FilePolicy
from mailward.attachments.files import FileNode, UnpackLimits, _Budget, unpack, walk
from mailward.attachments.identify import DEFAULT_DANGEROUS_EXTENSIONS, DEFAULT_DANGEROUS_KINDS
from mailward.attachments.passwords import COMMON
from mailward.attachments.workers import AnalyserPool

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "malware"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", nargs="?", default=str(DEFAULT))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    files = [(p.name, p.read_bytes()) for p in sorted(Path(args.directory).rglob("*"))
             if p.is_file()]
    pool = None if args.in_process else AnalyserPool(1, 30.0)
    check = AttachmentCheck(FilePolicy(list(DEFAULT_DANGEROUS_EXTENSIONS),
                                       list(DEFAULT_DANGEROUS_KINDS)), 60.0, pool=pool)
    for round_number in range(1, args.rounds + 1):
        nodes = 0
        started = time.perf_counter()
        cpu = time.process_time() + (pool.cpu_seconds() if pool else 0.0)
        for name, data in files:
            root = FileNode(name, data)
            unpack(root, _Budget(UnpackLimits(), list(COMMON)))
            tree = list(walk([root]))
            nodes += len(tree)
            check.analyse(tree)
        wall = time.perf_counter() - started
        used = time.process_time() + (pool.cpu_seconds() if pool else 0.0) - cpu
        print(f"round {round_number}: {len(files)} files ({nodes} nodes) in {wall:.2f}s: "
              f"{len(files) / wall:.1f} files/s, {nodes / wall:.1f} nodes/s, "
              f"CPU {used / len(files) * 1000:.1f} ms/file"
              + ("" if pool is None else " (with the worker's)"))
    if pool is not None:
        pool.close()


if __name__ == "__main__":
    main()
