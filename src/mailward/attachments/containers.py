"""Unpackers for every container but zip: archives, images, documents with files inside.

Each unpacker takes a node and its message's budget and yields the members
as child nodes; ``files.unpack`` recurses into them. Registered here:
7z (py7zr), tar, gzip, bzip2 and xz, ISO 9660 / UDF images (pycdlib),
RAR (``rar``: rarfile lists, unar decompresses), OneNote sections
(embedded files), Outlook MSG files and attached messages (their
attachments), Office documents (embedded objects), PDF (embedded
files) and HTML pages whose scripts carry a base64 payload (HTML
smuggling).

SECURITY: all of these parse attacker bytes in process (RAR decompression
runs in a confined tool, see ``rar``), so each reads members through
bounded reads, checks the budget before it allocates, and turns any
exception of the parsing library into ``ARCHIVE_CORRUPT`` on the node:
a parser failure is a finding, never a pass.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import re
import tarfile
import zlib
from typing import Callable, Iterator

from mailward.attachments.files import UNPACKERS, FileNode, Note, _Budget

_CHUNK = 1 << 16


def _bounded(stream: io.BufferedIOBase | object, limit: int) -> bytes:
    """_bounded - read at most limit + 1 bytes, so the caller sees an overrun."""
    out = bytearray()
    while len(out) <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(out)))  # type: ignore[attr-defined]
        if not chunk:
            break
        out.extend(chunk)
    return bytes(out)


def _corrupt(node: FileNode, error: BaseException) -> None:
    node.problems.append(f"ARCHIVE_CORRUPT: {type(error).__name__}: {str(error)[:200]}")


# Compressors: one member, named after the container without its suffix.

def _inner_name(name: str, suffixes: tuple[str, ...]) -> str:
    lower = name.lower()
    for suffix in suffixes:
        if lower.endswith(suffix):
            stem = name[:-len(suffix)]
            return stem + ".tar" if suffix in (".tgz", ".tbz", ".tbz2", ".txz") else stem
    return name + ".out" if name else "(decompressed)"


def _decompressor(opener: Callable[[io.BytesIO], object], suffixes: tuple[str, ...]):
    def unpack(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
        if not budget.admit(node):
            return
        try:
            with opener(io.BytesIO(node.data)) as stream:  # type: ignore[attr-defined]
                data = _bounded(stream, budget.left)
        except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as error:
            _corrupt(node, error)
            return
        name = _inner_name(node.name, suffixes)
        if not budget.ratio_ok(node, name, len(node.data), len(data)):
            return
        if not budget.take(node, len(data), name):
            return
        yield node.child(name, data)
    return unpack


def _untar(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(node.data), mode="r:")
        members = archive.getmembers()
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        _corrupt(node, error)
        return
    for member in members:
        if not member.isfile():
            continue
        if not budget.admit(node) or not budget.take(node, member.size, member.name):
            return
        try:
            handle = archive.extractfile(member)
            data = _bounded(handle, member.size) if handle else b""
        except (tarfile.TarError, OSError, EOFError, ValueError) as error:
            _corrupt(node, error)
            return
        yield node.child(member.name, data)


def _un7z(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    import py7zr
    from py7zr.io import BytesIOFactory

    def attempt(password: str | None) -> list[FileNode] | None:
        try:
            with py7zr.SevenZipFile(io.BytesIO(node.data), password=password) as archive:
                infos = [i for i in archive.list() if not i.is_directory]
                wanted = []
                for info in infos:
                    if not budget.admit(node):
                        break
                    size = int(info.uncompressed or 0)
                    if not budget.ratio_ok(node, info.filename, int(info.compressed or 0)
                                           or len(node.data), size):
                        break
                    if not budget.take(node, size, info.filename):
                        break
                    wanted.append(info.filename)
                if not wanted:
                    return []
                factory = BytesIOFactory(budget.limits.max_total)
                archive.extract(targets=wanted, factory=factory)
                found = []
                for name in wanted:
                    product = factory.products.get(name)
                    data = product.read() if product is not None else b""
                    found.append(node.child(name, data, password=password or ""))
                return found
        except py7zr.exceptions.PasswordRequired:
            return None
        except Exception as error:  # py7zr raises many types on hostile input
            if password is None and ("password" in str(error).lower()
                                     or "crc" in str(error).lower()):
                return None
            if password is None:
                _corrupt(node, error)
                return []
            return None

    members = attempt(None)
    if members is None:
        for password in budget.passwords:
            members = attempt(password)
            if members:
                for member in members:
                    member.notes.append(Note("ATTACH_ENCRYPTED_OPENED",
                                             f"{member.path} opened with a password the "
                                             "message offers"))
                break
    if members is None:
        node.encrypted = True
        yield node.child("(encrypted 7z content)", b"", encrypted=True, problems=["ENCRYPTED"])
        return
    yield from members


def _iso_files(iso) -> Iterator[tuple[str, dict]]:
    """_iso_files - (shown path, pycdlib path argument) of every file, best names first."""
    for facade, key in (("udf", "udf_path"), ("joliet", "joliet_path"),
                        ("rock_ridge", "rr_path"), ("iso9660", "iso_path")):
        if facade == "udf" and not iso.has_udf():
            continue
        if facade == "joliet" and not iso.has_joliet():
            continue
        if facade == "rock_ridge" and not iso.has_rock_ridge():
            continue
        walk_key = "iso_path" if key == "rr_path" else key
        for root, _dirs, files in iso.walk(**{walk_key: "/"}):
            for name in files:
                full = root.rstrip("/") + "/" + name
                shown = full.lstrip("/")
                if facade == "iso9660":
                    shown = shown.rsplit(";", 1)[0]
                yield shown, {walk_key: full}
        return


def _uniso(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    import pycdlib

    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(node.data))
        entries = list(_iso_files(iso))
    except Exception as error:  # pycdlib raises its own and plain errors alike
        _corrupt(node, error)
        return
    for shown, where in entries:
        if not budget.admit(node):
            return
        try:
            record = iso.get_record(**where)
            size = record.get_data_length()
            if not budget.take(node, size, shown):
                return
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **where)
        except Exception as error:
            node.problems.append(f"ARCHIVE_MEMBER_UNREADABLE: {shown}: {error}")
            continue
        yield node.child(shown, out.getvalue()[:size])


def _unrar(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    from mailward.attachments.rar import unrar

    yield from unrar(node, budget)


# OneNote: each embedded file is a FileDataStoreObject, marked by this GUID
# ([MS-ONESTORE] 2.6.13) and followed by its length and the bytes.
_ONENOTE_FILE = bytes.fromhex("e716e3bd65261145a4c48d4d0b7a9eac")


def _unonenote(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    data = node.data
    position = 0
    number = 0
    while True:
        found = data.find(_ONENOTE_FILE, position)
        if found < 0 or found + 36 > len(data):
            return
        length = int.from_bytes(data[found + 16:found + 24], "little")
        start = found + 36
        position = start
        if length <= 0 or start + length > len(data):
            node.problems.append("ARCHIVE_CORRUPT: OneNote embedded file overruns the section")
            return
        number += 1
        if not budget.admit(node) or not budget.take(node, length, f"embedded file {number}"):
            return
        yield node.child(f"embedded-{number}", data[start:start + length])
        position = start + length


def _unmsg(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    """_unmsg - the attachments of an Outlook MSG file ([MS-OXMSG] 2.2.2)."""
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(node.data))
        streams = ole.listdir(streams=True, storages=False)
    except Exception as error:
        _corrupt(node, error)
        return
    storages = sorted({path[0] for path in streams if path[0].startswith("__attach_version1.0_")})
    for storage in storages:
        def read(prop: str) -> bytes | None:
            for suffix in ("001F", "001E", "0102"):
                name = [storage, f"__substg1.0_{prop}{suffix}"]
                if ole.exists("/".join(name)):
                    return ole.openstream(name).read(budget.left + 1)
            return None
        raw_name = read("3707") or read("3704") or b""
        name = raw_name.decode("utf-16-le", "replace").strip("\x00") if b"\x00" in raw_name \
            else raw_name.decode("latin-1")
        payload = read("3701") or b""
        if not budget.admit(node) or not budget.take(node, len(payload), name or storage):
            return
        yield node.child(name or storage, payload)


def _unmail(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    """_unmail - the attachments of a message sent as a file (message/rfc822, .eml)."""
    from mailward.message import Message

    try:
        inner = Message(node.data)
        parts = inner.attachments
    except Exception as error:
        _corrupt(node, error)
        return
    for part in parts:
        if not budget.admit(node):
            return
        data = part.payload
        if not budget.take(node, len(data), part.filename or part.path):
            return
        yield node.child(part.filename or f"part-{part.path}", data,
                         declared_type=part.content_type)


def _decrypt_office(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    """_decrypt_office - an encrypted Office file, opened with an offered password."""
    import msoffcrypto

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(node.data))
        if not office.is_encrypted():
            return
    except Exception:
        return
    node.encrypted = True
    # "VelvetSweatshop" is the password Excel uses when none was set.
    # Each try of an agile-encrypted file costs a slow key derivation: few tries.
    for password in ("VelvetSweatshop", *budget.passwords[:6]):
        try:
            office = msoffcrypto.OfficeFile(io.BytesIO(node.data))
            office.load_key(password=password)
            out = io.BytesIO()
            office.decrypt(out)
        except Exception:
            continue
        data = out.getvalue()
        if not budget.admit(node) or not budget.take(node, len(data), "decrypted document"):
            return
        opened = node.child(f"(decrypted) {node.name}", data, password=password)
        opened.notes.append(Note("ATTACH_ENCRYPTED_OPENED", f"{node.path}: decrypted with a "
                                 "password the message offers or a well-known one"))
        yield opened
        return
    node.problems.append("ENCRYPTED")


def _unoffice(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    """_unoffice - embedded objects of a document (OLE Package payloads, raw parts)."""
    from mailward.attachments.office import embedded_objects

    if node.kind == "ole" and b"E\x00n\x00c\x00r\x00y\x00p\x00t" in node.data[:1 << 20] \
            or node.kind == "ole" and b"FILEPASS" in node.data[:1 << 20].upper():
        yield from _decrypt_office(node, budget)
        if node.encrypted:
            return
    if node.kind == "ole" and _xls_encrypted(node.data):
        yield from _decrypt_office(node, budget)
        if node.encrypted:
            return

    try:
        objects = embedded_objects(node.data, node.kind)
    except Exception as error:
        node.problems.append(f"ARCHIVE_MEMBER_UNREADABLE: embedded objects: {error}")
        return
    for name, data in objects:
        if not budget.admit(node) or not budget.take(node, len(data), name):
            return
        yield node.child(name, data)


def _xls_encrypted(data: bytes) -> bool:
    """_xls_encrypted - BIFF8 workbooks hold their encryption in a FILEPASS record."""
    return b"W\x00o\x00r\x00k\x00b\x00o\x00o\x00k" in data[:1 << 16] and \
        b"\x2f\x00" in data[:1 << 20] and _msoffcrypto_encrypted(data)


def _msoffcrypto_encrypted(data: bytes) -> bool:
    try:
        import msoffcrypto

        return bool(msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted())
    except Exception:
        return False


def _unpdf(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    from mailward.attachments.pdf import embedded_files

    if b"/EmbeddedFile" not in node.data and b"/EmbeddedFiles" not in node.data:
        return
    try:
        files = embedded_files(node.data, budget.left)
    except Exception as error:
        node.problems.append(f"ARCHIVE_MEMBER_UNREADABLE: PDF embedded files: {error}")
        return
    for name, data in files:
        if not budget.admit(node) or not budget.take(node, len(data), name):
            return
        yield node.child(name, data)


# A base64 string literal long enough to carry a payload (HTML smuggling).
_B64_LITERAL = re.compile(rb"""["'`]([A-Za-z0-9+/\r\n\\]{256,}={0,2})["'`]""")


def smuggled_payloads(data: bytes, limit: int) -> list[bytes]:
    """smuggled_payloads - decoded base64 literals of a page that are files."""
    from mailward.attachments.identify import identify

    found = []
    for match in _B64_LITERAL.finditer(data[:20 * 1024 * 1024]):
        text = re.sub(rb"\\[rn]|[\r\n\\]", b"", match.group(1))
        try:
            decoded = base64.b64decode(text + b"=" * (-len(text) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) > limit:
            continue
        kind = identify(decoded)
        if kind not in ("text", "unknown") and not kind.startswith("other:"):
            found.append(decoded)
        if len(found) >= 20:
            break
    return found


def _unhtml(node: FileNode, budget: _Budget) -> Iterator[FileNode]:
    extensions = {"zip": "zip", "pe": "exe", "iso": "iso", "ooxml": "docx", "ole": "doc",
                  "pdf": "pdf", "7z": "7z", "rar": "rar", "script-js": "js", "lnk": "lnk",
                  "html": "html", "onenote": "one", "gzip": "gz"}
    from mailward.attachments.identify import identify

    for number, payload in enumerate(smuggled_payloads(node.data, budget.left), start=1):
        if not budget.admit(node) or not budget.take(node, len(payload), "payload"):
            return
        kind = identify(payload)
        name = f"smuggled-{number}.{extensions.get(kind, 'bin')}"
        yield node.child(name, payload)


def _kind_is(*kinds: str) -> Callable[[FileNode], bool]:
    return lambda node: node.kind in kinds


UNPACKERS.extend([
    (_kind_is("gzip"), _decompressor(lambda f: gzip.GzipFile(fileobj=f),
                                     (".tgz", ".gz", ".gzip"))),
    (_kind_is("bzip2"), _decompressor(lambda f: bz2.BZ2File(f), (".tbz2", ".tbz", ".bz2"))),
    (_kind_is("xz"), _decompressor(lambda f: lzma.LZMAFile(f), (".txz", ".xz"))),
    (_kind_is("tar"), _untar),
    (_kind_is("7z"), _un7z),
    (_kind_is("iso"), _uniso),
    (_kind_is("rar"), _unrar),
    (_kind_is("onenote"), _unonenote),
    (_kind_is("msg"), _unmsg),
    (_kind_is("email"), _unmail),
    (_kind_is("ooxml", "ole", "rtf"), _unoffice),
    (_kind_is("pdf"), _unpdf),
    (_kind_is("html", "svg", "hta"), _unhtml),
])
