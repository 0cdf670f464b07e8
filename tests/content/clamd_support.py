"""A real clamd for the content tests, on a signature database made here.

The public signature downloads are not reachable, so each daemon loads a
database the tests write: an MD5 signature (.hdb) of a sample file and a
body signature (.ndb) of a marker string. clamd listens on a unix socket in
a short temporary directory (socket paths are limited to 108 bytes) and on a
loopback TCP port.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.dnsserver import free_port

CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"
SAMPLE = b"mailward clamd test sample: not malware, only listed by its MD5\n"
MARKER = b"MAILWARD-CLAMD-TEST-MARKER-7f3a"
SAMPLE_SIGNATURE = "Mailward.Test.Sample"
MARKER_SIGNATURE = "Mailward.Test.Marker"
# The EICAR test file by its MD5 (corpus MANIFEST), for clamd's own unpacking.
EICAR_MD5 = "44d88612fea8a8f36de82e1278abb02f"
EICAR_SIGNATURE = "Mailward.Test.Eicar"


@dataclass
class Clamd:
    directory: Path
    socket_path: Path
    tcp_port: int
    process: subprocess.Popen

    @property
    def tcp(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"

    def log(self) -> str:
        path = self.directory / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def _ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(1)
            client.connect(str(path))
            client.sendall(b"zPING\0")
            return client.recv(16).startswith(b"PONG")
    except OSError:
        return False


def start_clamd(stream_max: str = "1M") -> Clamd:
    directory = Path(tempfile.mkdtemp(prefix="clamd", dir="/tmp"))
    database = directory / "db"
    database.mkdir()
    digest = hashlib.md5(SAMPLE).hexdigest()
    (database / "mailward.hdb").write_text(f"{digest}:{len(SAMPLE)}:{SAMPLE_SIGNATURE}\n"
                                           f"{EICAR_MD5}:68:{EICAR_SIGNATURE}\n")
    (database / "mailward.ndb").write_text(f"{MARKER_SIGNATURE}:0:*:{MARKER.hex()}\n")
    port = free_port()
    socket_path = directory / "clamd.sock"
    (directory / "clamd.conf").write_text("\n".join([
        f"LocalSocket {socket_path}", f"TCPSocket {port}", "TCPAddr 127.0.0.1",
        f"DatabaseDirectory {database}", "Foreground yes",
        f"LogFile {directory / 'clamd.log'}", f"PidFile {directory / 'clamd.pid'}",
        f"StreamMaxLength {stream_max}", "AlertExceedsMax yes", "Bytecode no",
        "SelfCheck 0", ""]))
    process = subprocess.Popen([CLAMD, "-c", str(directory / "clamd.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clamd exited {process.returncode}:\n"
                               f"{(directory / 'clamd.log').read_text(errors='replace')}")
        if _ping(socket_path):
            return Clamd(directory, socket_path, port, process)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("clamd did not answer PING within 60s")


@pytest.fixture
def clamd():
    need(Path(CLAMD).exists(), "clamd (Debian package clamav-daemon)")
    daemon = start_clamd()
    yield daemon
    daemon.kill()
    shutil.rmtree(daemon.directory, ignore_errors=True)
