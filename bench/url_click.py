"""Click service: requests per second and latency on one core.

Starts a real ``mailward serve`` pinned to one core, delivers one message
over SMTP to its mailbox store, takes a rewritten link from the delivered
copy, then a load generator in a second process (pinned to another core)
follows that link over keep-alive HTTP/1.1 connections for a fixed time:
each request is verified, judged against the intelligence and logged in the
click table, as a real click is. Prints requests per second, p50 and p99.

    .venv/bin/python bench/url_click.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(directory: Path, core: int) -> tuple[subprocess.Popen, int, int]:
    smtp_port, web_port = free_port(), free_port()
    config = directory / "mailward.toml"
    config.write_text(f"""[smtp]\nlisten = "127.0.0.1:{smtp_port}"\nhostname = "mx.bench.example"
[web]\nlisten = "127.0.0.1:{web_port}"\n[storage]\ndata_dir = "{directory / 'data'}"
[urls]\nscanner_window = "0s"\n[log]\nlevel = "warning"\n""")
    server = subprocess.Popen([sys.executable, "-m", "mailward", "serve", "--config", str(config)],
                              stdout=open(directory / "serve.log", "wb"), stderr=subprocess.STDOUT,
                              preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{web_port}/readyz", timeout=1).status_code == 200:
                return server, smtp_port, web_port
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("mailward serve did not start:\n" + (directory / "serve.log").read_text())


def delivered_link(directory: Path, smtp_port: int) -> str:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.sendmail("dana@example.org", ["user@example.com"],
                        b"From: dana@example.org\r\nTo: user@example.com\r\nSubject: bench\r\n"
                        b"Message-ID: <bench@example.org>\r\n\r\n"
                        b"Agenda: https://docs.example.net/agenda?id=42\r\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in (directory / "data/mailboxes").rglob("new/*"):
            found = re.search(rb"http://127\.0\.0\.1:\d+/u/\S+", path.read_bytes())
            if found:
                return found.group(0).decode()
        time.sleep(0.2)
    raise SystemExit("no delivered copy with a rewritten link")


async def _client(host: str, port: int, path: str, stop: float, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Mozilla/5.0 "
               "(X11; Linux x86_64) Firefox/120.0\r\nConnection: keep-alive\r\n\r\n").encode()
    errors = 0
    while time.perf_counter() < stop:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        latencies.append(time.perf_counter() - started)
        errors += not head.startswith(b"HTTP/1.1 302")
    writer.close()
    return errors


def load(link: str, seconds: float, connections: int, core: int, queue) -> None:
    os.sched_setaffinity(0, {core})
    match = re.match(r"http://([^:/]+):(\d+)(/.*)", link)
    host, port, path = match.group(1), int(match.group(2)), match.group(3)

    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        stop = time.perf_counter() + seconds
        errors = await asyncio.gather(*(_client(host, port, path, stop, latencies)
                                        for _ in range(connections)))
        return latencies, sum(errors)

    queue.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    server_core, load_core = cores[0], cores[-1]
    directory = Path(tempfile.mkdtemp(prefix="mailward-click-bench-"))
    server, smtp_port, web_port = start_server(directory, server_core)
    try:
        link = delivered_link(directory, smtp_port)
        warm = httpx.get(link, follow_redirects=False, timeout=10)
        assert warm.status_code == 302, warm.text
        queue = multiprocessing.Queue()
        worker = multiprocessing.Process(target=load, args=(link, args.seconds,
                                                            args.connections, load_core, queue))
        worker.start()
        latencies, errors = queue.get(timeout=args.seconds + 120)
        worker.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"click service (one core, {args.connections} keep-alive connections, "
          f"{args.seconds:g}s, each click verified, judged and logged in SQLite):")
    print(f"  {len(latencies) / args.seconds:.0f} requests/s, p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"{errors} non-302 answers of {len(latencies)}")


if __name__ == "__main__":
    main()
