"""Confinement of a detonation: a child process with limits and no network.

Every built-in detonation runs here, never in the gateway's own process:
a new session (so the whole process group is killed on time-out), resource
limits on CPU time, data size, file size, open files and core dumps, a
throw-away working directory that is also its HOME and TMPDIR, an
environment with nothing of the gateway's, and (``network=False``) new
user, network and PID namespaces through ``unshare``: inside, only a
loopback interface exists, and every process dies with the first.

SECURITY: what runs here is attacker content (a page's script, a dropper).
The limits bound what it can take from the host; the namespaces take away
the network. Nothing here raises on the child's behaviour: a time-out or a
crash is a result.
"""

from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


@dataclass(frozen=True, slots=True)
class Limits:
    seconds: float = 30.0
    memory: int = 2 * 1024 ** 3
    file_size: int = 256 * 1024 * 1024
    open_files: int = 1024
    network: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    seconds: float


def isolation_available() -> bool:
    """isolation_available - unshare can make user, network and PID namespaces."""
    tool = shutil.which("unshare")
    if not tool:
        return False
    try:
        result = subprocess.run([tool, "-r", "-n", "-p", "-f", "true"], timeout=10,
                                capture_output=True)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _limit(limits: Limits):
    def apply() -> None:
        cpu = int(limits.seconds) + 5
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        resource.setrlimit(resource.RLIMIT_DATA, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_confined(argv: list[str], workdir: Path, limits: Limits,
                 env: dict[str, str] | None = None) -> Outcome:
    """run_confined - run argv in workdir under the limits; what it returned."""
    workdir.mkdir(parents=True, exist_ok=True)
    # A short TMPDIR of its own: Chromium puts sockets there, whose paths are
    # limited to 108 bytes.
    scratch = tempfile.mkdtemp(prefix="mwsb-")
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
                   "TMPDIR": scratch, "LANG": "C.UTF-8"}
    environment.update(env or {})
    command = list(argv)
    if not limits.network:
        command = [shutil.which("unshare") or "unshare", "-r", "-n", "-p", "-f",
                   "--kill-child", sys.executable, "-m", "mailward.attachments.sandbox.confine",
                   "--", *argv]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=workdir, env=environment, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, preexec_fn=_limit(limits))
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=limits.seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        stdout, stderr = process.communicate()
    _kill_group(process)
    shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(process.returncode, stdout[-8 * 1024 * 1024:], stderr[-65536:], timed_out,
                   time.monotonic() - started)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _loopback_up() -> None:
    """_loopback_up - bring up lo in a fresh network namespace (tools talk over it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


def main() -> None:
    """main - inside the namespaces: loopback up, then become the command."""
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    _loopback_up()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
