"""Throughput of the offline pipeline (what `mailward scan` runs), on one core.

Usage: .venv/bin/python bench/scan.py [DIR ...]   (default: ../shared/corpus/spam)

Pins itself to one CPU, judges every message of the folders with the full
pipeline of the embedded defaults (parse, every check, policy), and prints
messages per second and CPU time per message (this process's and that of the
attachment analysers' worker processes). Start-up (imports, model load)
is timed separately. DNS goes to a local server in a process of its own that
knows no names (there is no internet here); a first pass over the messages
warms the resolver's cache, as on a gateway that has been running a while,
and the second pass is the one timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_DNS = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.dnsserver import DnsTestServer
server = DnsTestServer().start()
print(server.address, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def dns_server():
    """dns_server - a DNS server knowing no names, in its own process; its address."""
    process = subprocess.Popen([sys.executable, "-c", _DNS, str(ROOT)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(timeout=10)


async def main(folders: list[Path]) -> None:
    started = time.perf_counter()
    from mailward.attachments.workers import shared_cpu_seconds
    from mailward.cli import scan_envelope
    from mailward.config import load_settings
    from mailward.content.train import message_files
    from mailward.gateway import Gateway

    with tempfile.TemporaryDirectory() as data_dir, dns_server() as nameserver:
        gateway = Gateway(load_settings(overrides={"storage.data_dir": data_dir,
                                                   "dns.nameservers": [nameserver]}))
        await gateway.start()
        startup = time.perf_counter() - started
        files = message_files(folders)
        blobs = [path.read_bytes() for path in files]
        for raw in blobs:  # warm the DNS cache and the lazy imports
            await gateway.judge(scan_envelope(raw), raw)
        timings = []
        workers_start = shared_cpu_seconds()
        cpu_start = time.process_time() + workers_start
        wall_start = time.perf_counter()
        for raw in blobs:
            one = time.perf_counter()
            await gateway.judge(scan_envelope(raw), raw)
            timings.append(time.perf_counter() - one)
        wall = time.perf_counter() - wall_start
        workers = shared_cpu_seconds() - workers_start
        cpu = time.process_time() + workers_start + workers - cpu_start
        await gateway.close()
    timings.sort()
    print(f"messages: {len(blobs)} from {', '.join(str(f) for f in folders)}")
    print(f"start-up: {startup:.2f} s")
    print(f"throughput (one core): {len(blobs) / wall:.0f} messages/s")
    print(f"CPU per message: {cpu / len(blobs) * 1000:.2f} ms "
          f"(of which the analyser workers' {workers / len(blobs) * 1000:.2f} ms)")
    print(f"latency per message: median {statistics.median(timings) * 1000:.2f} ms, "
          f"p99 {timings[int(len(timings) * 0.99)] * 1000:.2f} ms")


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    args = [Path(a) for a in sys.argv[1:]] or [ROOT.parent / "shared/corpus/spam"]
    asyncio.run(main(args))
