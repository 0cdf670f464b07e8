"""RAR archives written by the tests, so that no RAR creator is needed.

No program that creates RAR archives is free software, so the tests write
them byte by byte from the published format: RAR 4 (the 2.9 block format)
and RAR 5, with stored members (what ``rar -m0`` writes), and RAR 5 members
encrypted with AES-256 as ``rar -p`` does (with or without
its password check value). The decompressor under test
(unar) reads them like any other RAR; stored members keep the fixtures
exact and readable, compressed ones would need the proprietary encoder.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

RAR4_MARK = b"Rar!\x1a\x07\x00"
RAR5_MARK = b"Rar!\x1a\x07\x01\x00"


def _rar4_block(kind: int, flags: int, body: bytes) -> bytes:
    """_rar4_block - one RAR 4 block: CRC16 (low half of CRC32), type, flags, size."""
    head = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(head) & 0xFFFF) + head


def rar4_of(members: dict[str, bytes]) -> bytes:
    """rar4_of - a RAR 4 archive of stored members."""
    out = [RAR4_MARK, _rar4_block(0x73, 0, b"\x00" * 6)]
    for name, data in members.items():
        raw = name.encode("ascii")
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data),
                           0x5A210000, 29, 0x30, len(raw), 0x20) + raw
        out.append(_rar4_block(0x74, 0x8000, body) + data)
    out.append(_rar4_block(0x7B, 0x4000, b""))
    return b"".join(out)


def _vint(value: int) -> bytes:
    """_vint - a RAR 5 variable-length integer, seven bits a byte."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _rar5_block(kind: int, flags: int, fields: bytes, extra: bytes = b"",
                data_size: int | None = None) -> bytes:
    """_rar5_block - one RAR 5 header: CRC32, size, type, flags, areas, fields."""
    flags |= (0x01 if extra else 0) | (0x02 if data_size is not None else 0)
    head = _vint(kind) + _vint(flags)
    if extra:
        head += _vint(len(extra))
    if data_size is not None:
        head += _vint(data_size)
    head += fields + extra
    sized = _vint(len(head)) + head
    return struct.pack("<I", zlib.crc32(sized)) + sized


def _rar5_file(name: str, data: bytes, size: int, crc: int,
               extra: bytes = b"") -> tuple[bytes, bytes]:
    raw = name.encode("utf-8")
    # File flags 0x04: a CRC32 follows; compression info 0: version 0, stored.
    fields = (_vint(0x04) + _vint(size) + _vint(0x20) + struct.pack("<I", crc)
              + _vint(0) + _vint(0) + _vint(len(raw)) + raw)
    return _rar5_block(2, 0, fields, extra, data_size=len(data)), data


def _fold(digest: bytes, width: int) -> bytes:
    """_fold - a digest XOR-folded to width bytes, as RAR 5 shortens its hashes."""
    out = bytearray(width)
    for position, byte in enumerate(digest):
        out[position % width] ^= byte
    return bytes(out)


def _check_value(secret: bytes, salt: bytes, rounds: int) -> bytes:
    """_check_value - the 12 bytes that let a reader test a password cheaply."""
    value = _fold(hashlib.pbkdf2_hmac("sha256", secret, salt, rounds + 32), 8)
    return value + hashlib.sha256(value).digest()[:4]


def rar5_of(members: dict[str, bytes], password: str | None = None,
            kdf_log2: int = 12, check: bool = False, headers: bool = False) -> bytes:
    """rar5_of - a RAR 5 archive of stored members, AES-256 encrypted with a password.

    With check, each member also carries the password check value and its
    CRC is keyed by the password ("tweaked"), as rar itself writes them.
    With headers, the headers are encrypted too (``rar -hp``): only the
    password lists the names."""
    blocks = _rar5_blocks(members, password, kdf_log2, check)
    if not headers:
        return RAR5_MARK + b"".join(head + data for head, data in blocks)
    # An archive encryption header, then every header sealed with the archive
    # key behind its own IV, padded to the AES block; the data stays as it is.
    assert password is not None
    secret, rounds, salt = password.encode("utf-8"), 1 << kdf_log2, os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha256", secret, salt, rounds)
    out = [RAR5_MARK, _rar5_block(4, 0, _vint(0) + _vint(0x01) + bytes([kdf_log2]) + salt
                                  + _check_value(secret, salt, rounds))]
    for head, data in blocks:
        iv = os.urandom(16)
        padded = head + b"\x00" * (-len(head) % 16)
        out.append(iv + Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
                   .update(padded) + data)
    return b"".join(out)


def _rar5_blocks(members: dict[str, bytes], password: str | None, kdf_log2: int,
                 check: bool) -> list[tuple[bytes, bytes]]:
    """_rar5_blocks - (header, data) of the archive header, each member, the end."""
    out = [(_rar5_block(1, 0, _vint(0)), b"")]
    for name, data in members.items():
        crc = zlib.crc32(data)
        if password is None:
            out.append(_rar5_file(name, data, len(data), crc))
            continue
        # The key is PBKDF2-HMAC-SHA256 of the password with 2**kdf_log2 rounds,
        # the checksum key 16 rounds on, the check value 16 more (folded to 8
        # bytes, then 4 bytes of its SHA-256). The data is padded with zeros to
        # the AES block and sealed in CBC mode.
        secret, rounds = password.encode("utf-8"), 1 << kdf_log2
        salt, iv = os.urandom(16), os.urandom(16)
        key = hashlib.pbkdf2_hmac("sha256", secret, salt, rounds)
        padded = data + b"\x00" * (-len(data) % 16)
        sealed = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(padded)
        flags, tail = 0, b""
        if check:
            flags, tail = 0x03, _check_value(secret, salt, rounds)
            mac_key = hashlib.pbkdf2_hmac("sha256", secret, salt, rounds + 16)
            mac = hmac.new(mac_key, struct.pack("<I", crc), "sha256").digest()
            crc = int.from_bytes(_fold(mac, 4), "little")
        record = (_vint(1) + _vint(0) + _vint(flags) + bytes([kdf_log2]) + salt + iv
                  + tail)
        out.append(_rar5_file(name, sealed, len(data), crc, _vint(len(record)) + record))
    out.append((_rar5_block(5, 0, _vint(0)), b""))
    return out
