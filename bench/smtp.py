"""SMTP end to end: 16 concurrent sending sessions through a real `mailward serve`.

Usage: .venv/bin/python bench/smtp.py [--sessions 16] [--messages 1500]

Starts `mailward serve` (embedded defaults, a scratch data directory) relaying
to an SMTP sink in this process, sends corpus messages (../shared/corpus/spam)
from N concurrent sessions, waits until the sink has them all, and prints:
messages per second accepted and delivered, and the latency the gateway adds
at DATA (end of data to the 250 reply: spool fsync, judging, recording),
median and p99, as the clients saw it and as the gateway logged it; and the
CPU time the gateway process spent per message (less sensitive than the
rates to other load on the machine).
"""

from __future__ import annotations

import argparse
import os
import re
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gateway import RunningGateway, crlf  # noqa: E402
from tests.support.sink import SmtpSink  # noqa: E402


def sender(gateway: RunningGateway, messages: list[bytes], latencies: list[float],
           errors: list[str]) -> None:
    client = smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=120)
    client.ehlo("bench.example")
    for raw in messages:
        try:
            client.mail("bench@example.org")
            client.rcpt("user@example.com")
            client.putcmd("data")
            code, _ = client.getreply()
            if code != 354:
                raise smtplib.SMTPDataError(code, b"DATA refused")
            payload = re.sub(rb"(?m)^\.", b"..", raw)
            client.send(payload + (b"" if payload.endswith(b"\r\n") else b"\r\n"))
            started = time.perf_counter()
            client.send(b".\r\n")
            code, text = client.getreply()
            latencies.append(time.perf_counter() - started)
            if code != 250:
                errors.append(f"{code} {text[:80]!r}")
        except smtplib.SMTPException as error:
            errors.append(str(error))
            client.rset()
    client.quit()


def cpu_seconds(pid: int) -> float:
    """cpu_seconds - user and system CPU time of one process and its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--messages", type=int, default=1500)
    args = parser.parse_args()
    files = sorted(p for p in (ROOT.parent / "shared/corpus/spam").rglob("*")
                   if p.is_file() and "__" in p.name)[: args.messages]
    blobs = [crlf(p.read_bytes()) for p in files]
    sink = SmtpSink().start()
    with tempfile.TemporaryDirectory() as directory:
        gateway = RunningGateway(Path(directory), relay=sink.url, config={
            "log": {"level": "info"},
            "ratelimit": {"connections_per_ip": "0/1s", "messages_per_ip": "0/1s",
                          "connections_per_network": "0/1s", "messages_per_network": "0/1s"},
            "connection": {"reputation": False}}).start()
        try:
            shares = [blobs[i::args.sessions] for i in range(args.sessions)]
            latencies: list[float] = []
            errors: list[str] = []
            threads = [threading.Thread(target=sender, args=(gateway, share, latencies, errors))
                       for share in shares]
            cpu_before = cpu_seconds(gateway.process.pid)
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            accepted = time.perf_counter() - started
            expected = sum(1 for e in latencies) - len(errors)
            quarantined_or_rejected = len(re.findall(r"action=(quarantine|reject)", gateway.log()))
            target = expected - quarantined_or_rejected
            deadline = time.monotonic() + 300
            while len(sink.messages) < target and time.monotonic() < deadline:
                time.sleep(0.05)
            delivered = time.perf_counter() - started
            cpu = cpu_seconds(gateway.process.pid) - cpu_before
            logged = [float(v) for v in re.findall(r"took=(\d+)ms", gateway.log())]
        finally:
            gateway.stop()
            sink.stop()
    latencies.sort()
    logged.sort()
    print(f"messages: {len(blobs)} over {args.sessions} concurrent sessions")
    print(f"accepted: {len(latencies) - len(errors)} in {accepted:.1f} s = "
          f"{len(latencies) / accepted:.0f} messages/s (errors: {len(errors)})")
    print(f"delivered to the relay: {len(sink.messages)} (the rest quarantined or rejected: "
          f"{quarantined_or_rejected}), done after {delivered:.1f} s = "
          f"{len(latencies) / delivered:.0f} messages/s end to end")
    print(f"latency added at DATA, client view: median {statistics.median(latencies)*1000:.1f} ms,"
          f" p99 {latencies[int(len(latencies)*0.99)]*1000:.1f} ms")
    if logged:
        print(f"latency added at DATA, gateway log: median {statistics.median(logged):.0f} ms, "
              f"p99 {logged[int(len(logged)*0.99)]:.0f} ms")
    print(f"gateway CPU per message (receive, judge, record, deliver): "
          f"{cpu / max(len(latencies), 1) * 1000:.1f} ms")
    for error in errors[:5]:
        print("error:", error)


if __name__ == "__main__":
    main()
