"""RAR archives (RAR 4 and RAR 5): listed in process, decompressed by unar.

``rarfile`` reads the headers (names, sizes, CRCs, encryption parameters)
in process. The RAR compression is decompressed by ``unar`` (The
Unarchiver, Debian package ``unar``), which reads RAR 4 and RAR 5, solid
and encrypted archives alike; ``rarfile``'s own choice of tool is not
used, because it neither bounds the tool's time nor its memory. Without
unar the names are still judged and the content is reported as not
decompressed (``ARCHIVE_MEMBER_UNREADABLE``), which the policy quarantines.

Encrypted members are tried with the passwords the message offers. A RAR 5
password is checked in process against the archive's check value before
unar runs; otherwise the CRC of what unar returns decides, because unar
writing to a pipe does not verify it.

unar reads all the members the budget admits in one run, cut at their
declared sizes and each verified; what does not verify is read again on
its own, so one bad member cannot hide another.

SECURITY: the archive is hostile, and so may be its decompression. unar
runs in a private temporary directory that holds only the archive, with
no right to write files (RLIMIT_FSIZE 0), bounded address space and CPU
time, a wall-clock timeout, and its output read through a bound of the
members' declared sizes: a member that outgrows its header, a hung or
crashing unar, a wrong CRC are each a problem on the node, never a pass
and never unbounded memory or disk.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Iterator

from mailward.attachments.files import FileNode, Note, _Budget

log = logging.getLogger("mailward.attachments")

UNAR = "unar"
# Bounds of one unar run; the message's unpacking deadline also bounds it.
RUN_SECONDS = 20.0
RUN_MEMORY = 1 << 30
# RAR 5 derives its key with 2**n PBKDF2 rounds; rar writes n = 15, allows 24.
MAX_KDF_SHIFT = 24
_CHUNK = 1 << 16
_missing_logged = False


@dataclass(slots=True)
class Run:
    """What one bounded run of the tool returned."""

    returncode: int | None
    data: bytes
    overflow: bool = False
    timed_out: bool = False


def unar_path() -> str | None:
    """unar_path - the unar program, or None (logged once) when it is not installed."""
    global _missing_logged
    found = shutil.which(UNAR)
    if found is None and not _missing_logged:
        _missing_logged = True
        log.warning("unar is not installed: RAR members are listed but not "
                    "decompressed (install the Debian package unar)")
    return found


def _confine(cpu_seconds: int) -> None:
    """_confine - resource limits of the tool, set in the child before exec."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (RUN_MEMORY, RUN_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_bounded(command: list[str], cwd: str, limit: int, seconds: float) -> Run:
    """run_bounded - run a tool, read at most limit + 1 bytes of its output in time."""
    cpu = max(int(seconds) + 1, 1)
    process = subprocess.Popen(
        command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env={"HOME": cwd, "PATH": os.defpath, "LANG": "C.UTF-8"},
        preexec_fn=lambda: _confine(cpu), start_new_session=True)
    assert process.stdout is not None
    out = bytearray()
    deadline = time.monotonic() + seconds
    overflow = timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), _CHUNK)
            if not chunk:
                break
            out.extend(chunk)
            if len(out) > limit:
                overflow = True
                break
    if overflow or timed_out:
        _kill(process)
    process.stdout.close()
    try:
        returncode = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        _kill(process)
        returncode = process.wait()
        timed_out = True
    return Run(returncode, bytes(out[:limit + 1]), overflow, timed_out)


def _kill(process: subprocess.Popen) -> None:
    """_kill - end the tool and anything it started (its own session)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rar5_password_ok(info, password: str) -> bool | None:
    """_rar5_password_ok - the RAR 5 check value's answer, None when there is none."""
    encryption = getattr(info, "file_encryption", None)
    if not encryption or not encryption[5] or len(encryption[5]) != 12:
        return None
    _algo, _flags, shift, salt, _iv, check = encryption
    if shift > MAX_KDF_SHIFT or hashlib.sha256(check[:8]).digest()[:4] != check[8:]:
        return None
    # The check value is the key derivation run 32 rounds further, folded to 8 bytes.
    derived = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt,
                                  (1 << shift) + 32)
    folded = bytearray(8)
    for position, byte in enumerate(derived):
        folded[position % 8] ^= byte
    return bytes(folded) == check[:8]


def _plain_crc(info) -> int | None:
    """_plain_crc - the member's CRC32, unless absent or keyed by the password."""
    encryption = getattr(info, "file_encryption", None)
    if encryption and encryption[1] & 0x02:  # RAR 5 "tweaked" checksums
        return None
    return info.CRC if isinstance(info.CRC, int) else None


class _Extractor:
    """One archive on disk in a private directory, members read by unar."""

    def __init__(self, program: str, node: FileNode, budget: _Budget, directory: str,
                 password: str | None) -> None:
        self.program = program
        self.node = node
        self.budget = budget
        self.directory = directory
        self.archive = os.path.join(directory, "archive.rar")
        with open(os.open(self.archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                  "wb") as handle:
            handle.write(node.data)
        self.password = password  # the archive's (encrypted headers), or last good one

    def _run(self, indices: list[int], password: str | None,
             limit: int) -> tuple[bytes | None, str]:
        """_run - what unar writes for these members, in order, or None and why."""
        seconds = min(RUN_SECONDS, self.budget.deadline - time.monotonic())
        if seconds <= 0:
            return None, "the time for unpacking ran out"
        command = [self.program, "-q", "-no-recursion", "-no-directory", "-o", "-",
                   "-p", password or "", "-i", self.archive, *map(str, indices)]
        run = run_bounded(command, self.directory, limit, seconds)
        if run.timed_out:
            return None, f"unar took over {seconds:.0f}s"
        if run.overflow:
            return None, f"more than the {limit} bytes its header declares"
        if run.returncode:
            return None, f"unar failed (exit status {run.returncode})"
        return run.data, ""

    @staticmethod
    def _verify(info, data: bytes, password: str | None) -> str:
        """_verify - "" when the bytes are the member's, else why they are not."""
        if info.file_size and len(data) != info.file_size:
            return f"{len(data)} bytes where the header declares {info.file_size}"
        crc = _plain_crc(info)
        if crc is not None and zlib.crc32(data) != crc:
            return "CRC mismatch" + (" (wrong password)" if password else "")
        if crc is None and password and _rar5_password_ok(info, password) is None:
            return "no check value or CRC confirms the password"
        return ""

    def read(self, index: int, info, password: str | None,
             limit: int) -> tuple[bytes | None, str]:
        """read - one member's bytes and "" or None and why they are not there."""
        data, why = self._run([index], password, limit)
        if data is not None:
            why = self._verify(info, data, password)
        return (data, "") if data is not None and not why else (None, why)

    def batch(self, wanted: list[tuple[int, object]], password: str | None) -> dict[int,
                                                                                    bytes]:
        """batch - the members that one unar run yields intact, by index.

        One run for many members (and one pass over a solid archive) instead
        of a process each; the output is cut at the declared sizes, and what
        does not add up or verify is left to ``read``, one member at a time."""
        sizes = [int(info.file_size or 0) for _index, info in wanted]
        if len(wanted) < 2 or not all(sizes):
            return {}
        data, _why = self._run([index for index, _info in wanted], password, sum(sizes))
        if data is None or len(data) != sum(sizes):
            return {}
        found, offset = {}, 0
        for (index, info), size in zip(wanted, sizes):
            piece = data[offset:offset + size]
            offset += size
            if not self._verify(info, piece, password):
                found[index] = piece
        return found

    def member(self, index: int, info, limit: int) -> FileNode:
        """member - the child node of one member, decrypted if a password opens it."""
        name = info.filename
        if not info.needs_password():
            data, why = self.read(index, info, self.password, limit)
            if data is None:
                return self.node.child(name, b"", problems=[
                    f"ARCHIVE_MEMBER_UNREADABLE: {name}: {why}"])
            return self.node.child(name, data)
        tried = [self.password] if self.password else []
        for password in dict.fromkeys(tried + self.budget.passwords):
            if self.budget.expired():
                break
            if _rar5_password_ok(info, password) is False:
                continue
            data, _why = self.read(index, info, password, limit)
            if data is not None:
                self.password = password
                opened = self.node.child(name, data, password=password)
                opened.notes.append(Note("ATTACH_ENCRYPTED_OPENED",
                                         f"{opened.path} opened with a password the "
                                         "message offers"))
                return opened
        self.node.encrypted = True
        return self.node.child(name, b"", encrypted=True, problems=["ENCRYPTED"])


def _listing(node: FileNode, budget: _Budget):
    """_listing - (archive, password) of a readable listing; raises if there is none."""
    import rarfile

    # Strict: a truncated or broken header is an error, not a shorter listing.
    archive = rarfile.RarFile(io.BytesIO(node.data), errors="strict")
    if not (archive.needs_password() and not archive.infolist()):
        return archive, None
    # The headers themselves are encrypted (rar -hp): only the password lists them.
    for password in budget.passwords:
        if budget.expired():
            break
        try:
            archive = rarfile.RarFile(io.BytesIO(node.data), errors="strict")
            archive.setpassword(password)
            if archive.infolist():
                return archive, password
        except Exception:  # a wrong password shows as any of several errors
            continue
    raise rarfile.PasswordRequired("encrypted headers")


def unrar(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    """unrar - the members of a RAR archive, decompressed within the budget."""
    import rarfile

    try:
        archive, password = _listing(node, budget)
        infos = list(enumerate(archive.infolist()))
    except rarfile.PasswordRequired:
        node.encrypted = True
        yield node.child("(encrypted rar headers)", b"", encrypted=True,
                         problems=["ENCRYPTED"])
        return
    except Exception as error:  # rarfile raises its own and plain errors alike
        node.problems.append(f"ARCHIVE_CORRUPT: {type(error).__name__}: {str(error)[:200]}")
        return
    files = [(index, info) for index, info in infos if not info.is_dir()]
    program = unar_path()
    if program is None:
        yield from _names_only(node, budget, files)
        return
    admitted = _admitted(node, budget, files)
    with tempfile.TemporaryDirectory(prefix="mailward-rar-") as directory:
        extractor = _Extractor(program, node, budget, directory, password)
        plain = [(index, info) for index, info, _limit in admitted
                 if not info.needs_password() or password]
        found, opened_with = extractor.batch(plain, password), password
        second = False
        for index, info, limit in admitted:
            if index in found:
                member = node.child(info.filename, found.pop(index), password=(
                    opened_with or "") if info.needs_password() else "")
            else:
                member = extractor.member(index, info, limit)
                if extractor.password and not found and not second and member.password:
                    # The first member a password opened: the rest in one run.
                    rest = [(i, f) for i, f, _limit in admitted if i > index]
                    found = extractor.batch(rest, extractor.password)
                    opened_with, second = extractor.password, True
            if member.password and not any(n.symbol == "ATTACH_ENCRYPTED_OPENED"
                                           for n in member.notes):
                member.notes.append(Note("ATTACH_ENCRYPTED_OPENED", f"{member.path} "
                                         "opened with a password the message offers"))
            if not int(info.file_size or 0):
                budget.take(node, len(member.data), info.filename)
            yield member


def _admitted(node: FileNode, budget: _Budget, files) -> list[tuple[int, object, int]]:
    """_admitted - (index, info, read limit) of the members the budget allows."""
    admitted = []
    for index, info in files:
        if not budget.admit(node):
            break
        size = int(info.file_size or 0)
        if not budget.ratio_ok(node, info.filename, int(info.compress_size or 0), size):
            break
        if not budget.take(node, size, info.filename):
            break
        admitted.append((index, info, size if size else budget.left))
    return admitted


def _names_only(node: FileNode, budget: _Budget, files) -> Iterator[FileNode]:
    """_names_only - without unar: every member named, its content not scanned."""
    for _index, info in files:
        if not budget.admit(node):
            return
        name = info.filename
        member = node.child(name, b"", encrypted=bool(info.needs_password()))
        member.problems.append("ENCRYPTED" if info.needs_password() else
                               f"ARCHIVE_MEMBER_UNREADABLE: {name}: RAR content is not "
                               "decompressed (unar is not installed)")
        yield member
