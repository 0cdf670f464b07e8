"""The file tree of a message: every attachment and every archive member.

Each node has a path a person can read (``invoice.zip > docs/invoice.doc``),
its decoded bytes and their SHA-256. Containers are opened recursively by
the unpackers registered in ``UNPACKERS``, within limits on depth, member
count and unpacked size.

SECURITY: archives are hostile. Nothing is ever written to disk or run; an
archive that breaks a limit (a bomb, a quine, thousands of members) stops
being unpacked and the node records why, so that a check can turn it into a
finding instead of a silent pass.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from mailward.message import Message


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    max_depth: int = 5
    max_members: int = 1000
    max_total: int = 100 * 1024 * 1024
    max_ratio: int = 100


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

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

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


class _Budget:
    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0


Unpacker = Callable[[FileNode, _Budget], Iterator[FileNode]]


def _unzip(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(node.data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as error:
        node.problems.append(f"ARCHIVE_CORRUPT: {error}")
        return
    for info in infos:
        if info.is_dir():
            continue
        if budget.members >= budget.limits.max_members:
            node.problems.append(f"ARCHIVE_TOO_MANY_MEMBERS: over {budget.limits.max_members}")
            return
        budget.members += 1
        if info.flag_bits & 0x1:
            node.encrypted = True
            yield FileNode(info.filename, b"", depth=node.depth + 1, parent=node,
                           encrypted=True, problems=["ENCRYPTED"])
            continue
        if info.file_size > budget.limits.max_total - budget.total:
            node.problems.append(f"ARCHIVE_TOO_BIG: {info.filename} claims {info.file_size} bytes")
            return
        if info.compress_size and info.file_size / info.compress_size > budget.limits.max_ratio \
                and info.file_size > 1024 * 1024:
            node.problems.append(f"ARCHIVE_BOMB: {info.filename} ratio "
                                 f"{info.file_size // max(info.compress_size, 1)}")
            return
        try:
            with archive.open(info) as member:
                data = member.read(budget.limits.max_total - budget.total + 1)
        except (zipfile.BadZipFile, NotImplementedError, ValueError, EOFError, OSError,
                RuntimeError) as error:
            node.problems.append(f"ARCHIVE_MEMBER_UNREADABLE: {info.filename}: {error}")
            continue
        budget.total += len(data)
        if budget.total > budget.limits.max_total:
            node.problems.append("ARCHIVE_TOO_BIG: unpacked size over the limit")
            return
        yield FileNode(info.filename, data, depth=node.depth + 1, parent=node)


def _is_zip(node: FileNode) -> bool:
    return node.data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


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
        for child in unpacker(node, budget):
            node.children.append(child)
            unpack(child, budget)
        return


def walk(nodes: list[FileNode]) -> Iterator[FileNode]:
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def unpack_message(message: "Message", limits: UnpackLimits | None = None) -> list[FileNode]:
    """unpack_message - every file of a message, flattened, depth first."""
    budget = _Budget(limits or UnpackLimits())
    roots = []
    for part in message.attachments:
        node = FileNode(part.filename or "", part.payload, declared_type=part.content_type,
                        mime_path=part.path)
        unpack(node, budget)
        roots.append(node)
    return list(walk(roots))
