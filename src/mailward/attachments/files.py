"""The file tree of a message: every attachment and every archive member.

Each node has a path a person can read (``invoice.zip > docs/invoice.doc``),
its decoded bytes, their SHA-256 and its real type (``kind``, from the
content). Containers are opened recursively by the unpackers registered in
``UNPACKERS`` (zip here; 7z, tar, the compressors, ISO images, OneNote,
Outlook MSG, attached messages and HTML-smuggled payloads in
``containers``), within limits on depth, member count, unpacked size,
compression ratio and time. Encrypted members are tried with the passwords
the message itself offers (``passwords``).

SECURITY: archives are hostile. Nothing is ever written to disk or run; an
archive that breaks a limit (a bomb, a quine, thousands of members) stops
being unpacked and the node records why in ``problems``, so that a check
can turn it into a finding instead of a silent pass. Facts that are not
problems of unpacking (a zip whose local and central names differ, a
member opened with a password) are ``notes``.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from mailward.attachments.identify import identify
from mailward.cached import cached_property

if TYPE_CHECKING:
    from mailward.message import Message


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    max_depth: int = 5
    max_members: int = 1000
    max_total: int = 100 * 1024 * 1024
    max_ratio: int = 100
    max_seconds: float = 20.0
    max_passwords: int = 30


@dataclass(frozen=True, slots=True)
class Note:
    """A fact found while unpacking, for a check to turn into a finding."""

    symbol: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class FileNode:
    """One file: an attachment, or a member of a container above it."""

    name: str
    data: bytes
    declared_type: str = ""
    depth: int = 0
    parent: "FileNode | None" = field(default=None, repr=False)
    children: list["FileNode"] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    mime_path: str = ""
    encrypted: bool = False
    notes: list[Note] = field(default_factory=list)
    alt_names: list[str] = field(default_factory=list)
    password: str = ""

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def kind(self) -> str:
        """kind - the real type of the content (see ``identify``)."""
        return identify(self.data) if self.data else "empty"

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def path(self) -> str:
        names = []
        node: FileNode | None = self
        while node is not None:
            names.append(node.name or "(unnamed)")
            node = node.parent
        return " > ".join(reversed(names))

    def child(self, name: str, data: bytes, **fields: Any) -> "FileNode":
        """child - a member of this container."""
        return FileNode(name, data, depth=self.depth + 1, parent=self, **fields)


class _Budget:
    """What one message may still unpack: members, bytes, time; the passwords."""

    def __init__(self, limits: UnpackLimits,
                 passwords: list[str] | Callable[[], list[str]] | None = None) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0
        self.deadline = time.monotonic() + limits.max_seconds
        self._passwords = passwords
        self._tried: list[str] | None = None

    @property
    def passwords(self) -> list[str]:
        """The passwords to try, found in the message only when first needed."""
        if self._tried is None:
            found = self._passwords() if callable(self._passwords) else self._passwords
            self._tried = list(found or [])[:self.limits.max_passwords]
        return self._tried

    @property
    def left(self) -> int:
        return max(self.limits.max_total - self.total, 0)

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def admit(self, node: FileNode) -> bool:
        """admit - count one more member; False (and a problem) past a limit."""
        if self.expired():
            node.problems.append(f"ARCHIVE_TIME_LIMIT: unpacking took over "
                                 f"{self.limits.max_seconds:g}s")
            return False
        if self.members >= self.limits.max_members:
            node.problems.append(f"ARCHIVE_TOO_MANY_MEMBERS: over {self.limits.max_members}")
            return False
        self.members += 1
        return True

    def take(self, node: FileNode, size: int, what: str) -> bool:
        """take - account unpacked bytes; False (and a problem) past the total."""
        if size > self.left:
            node.problems.append(f"ARCHIVE_TOO_BIG: {what} needs {size} bytes, "
                                 f"{self.left} left of {self.limits.max_total}")
            return False
        self.total += size
        return True

    def ratio_ok(self, node: FileNode, name: str, packed: int, unpacked: int) -> bool:
        """ratio_ok - False (and ARCHIVE_BOMB) for a member that expands too far."""
        if unpacked > 1024 * 1024 and unpacked > self.limits.max_ratio * max(packed, 1):
            node.problems.append(f"ARCHIVE_BOMB: {name} ratio "
                                 f"{unpacked // max(packed, 1)} over {self.limits.max_ratio}")
            return False
        return True


Unpacker = Callable[[FileNode, _Budget], Iterator[FileNode]]


def _local_name(data: bytes, info: zipfile.ZipInfo) -> str | None:
    """_local_name - the name in a member's local file header (APPNOTE 4.3.7)."""
    offset = info.header_offset
    header = data[offset:offset + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        return None
    flags, = struct.unpack("<H", header[6:8])
    length, = struct.unpack("<H", header[26:28])
    raw = data[offset + 30:offset + 30 + length]
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "replace")


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        import pyzipper  # AES (WinZip) encryption, method 99

        return pyzipper.AESZipFile(io.BytesIO(data))
    except ImportError:  # pragma: no cover - pyzipper is a dependency
        return zipfile.ZipFile(io.BytesIO(data))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int,
                 password: str | None) -> bytes:
    pwd = password.encode("utf-8") if password is not None else None
    with archive.open(info, pwd=pwd) as member:
        return member.read(limit + 1)


def _zip_member(node: FileNode, archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                budget: _Budget) -> FileNode:
    """_zip_member - one member's bytes, decrypted with an offered password if need be."""
    name = info.filename
    if not info.flag_bits & 0x1:
        data = _read_member(archive, info, budget.left, None)
        return node.child(name, data)
    for password in budget.passwords:
        try:
            data = _read_member(archive, info, budget.left, password)
        except Exception:  # a wrong password shows as any of several errors
            continue
        opened = node.child(name, data, password=password)
        opened.notes.append(Note("ATTACH_ENCRYPTED_OPENED",
                                 f"{opened.path} opened with a password the message offers",
                                 {"password_source": "message or common list"}))
        return opened
    node.encrypted = True
    return node.child(name, b"", encrypted=True, problems=["ENCRYPTED"])


def _unzip(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    try:
        archive = _open_zip(node.data)
        infos = archive.infolist()
    except Exception as error:  # zipfile and pyzipper raise their own classes
        node.problems.append(f"ARCHIVE_CORRUPT: {error}")
        return
    for info in infos:
        if info.is_dir():
            continue
        if not budget.admit(node):
            return
        if not budget.ratio_ok(node, info.filename, info.compress_size, info.file_size):
            return
        if info.file_size > budget.left:
            node.problems.append(f"ARCHIVE_TOO_BIG: {info.filename} claims "
                                 f"{info.file_size} bytes")
            return
        local = _local_name(node.data, info)
        mismatch = local is not None and local != info.orig_filename
        if mismatch:
            # The name a mail filter reads (central directory) and the one an
            # unpacker writes (local header) differ: both are judged. The
            # standard library refuses such members; read them anyway.
            info.orig_filename = local  # type: ignore[misc]
        try:
            member = _zip_member(node, archive, info, budget)
        except Exception as error:  # a member that cannot be read is a finding
            node.problems.append(f"ARCHIVE_MEMBER_UNREADABLE: {info.filename}: {error}")
            continue
        if mismatch and local is not None:
            member.alt_names.append(local)
            node.notes.append(Note(
                "ATTACH_ZIP_NAME_MISMATCH",
                f"{node.path}: central directory names {info.filename!r}, the local "
                f"header {local!r}", {"central": info.filename, "local": local}))
        if not budget.take(node, len(member.data), info.filename):
            return
        yield member


def _is_zip(node: FileNode) -> bool:
    return node.data[:4] in (b"PK\x03\x04", b"PK\x05\x06") and node.kind in ("zip", "jar")


# (recogniser, unpacker): the first recogniser that accepts a node opens it.
UNPACKERS: list[tuple[Callable[[FileNode], bool], Unpacker]] = [(_is_zip, _unzip)]


def unpack(node: FileNode, budget: _Budget) -> None:
    """unpack - open a container node and its members, recursively."""
    for recognise, unpacker in UNPACKERS:
        if not recognise(node):
            continue
        if node.depth >= budget.limits.max_depth:
            node.problems.append(f"ARCHIVE_TOO_DEEP: nesting over {budget.limits.max_depth}")
            return
        try:
            for child in unpacker(node, budget):
                node.children.append(child)
                unpack(child, budget)
        except RecursionError:
            node.problems.append("ARCHIVE_TOO_DEEP: recursion limit")
        except MemoryError:
            node.problems.append("ARCHIVE_TOO_BIG: out of memory unpacking")
        return


def walk(nodes: list[FileNode]) -> Iterator[FileNode]:
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def unpack_message(message: "Message", limits: UnpackLimits | None = None) -> list[FileNode]:
    """unpack_message - every file of a message, flattened, depth first."""
    from mailward.attachments.passwords import candidate_passwords

    # TODO: Unpacking (py7zr, pycdlib, pypdf's embedded files, oletools' objects)
    # runs in this process and is bounded by the budget's deadline only between
    # members, so one crafted container that makes such a parser spin still holds
    # the pipeline thread until the pipeline deadline; only the analysers and the
    # RAR decompression run in killable processes.
    limits = limits or UnpackLimits()
    budget = _Budget(limits, lambda: candidate_passwords(message))
    roots = []
    for part in message.attachments:
        node = FileNode(part.filename or "", part.payload, declared_type=part.content_type,
                        mime_path=part.path)
        unpack(node, budget)
        roots.append(node)
    return list(walk(roots))


# The other unpackers register themselves in UNPACKERS.
from mailward.attachments import containers as _containers  # noqa: E402,F401
