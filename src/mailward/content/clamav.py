"""ClamAV: files scanned by a clamd daemon over its socket protocol.

The client speaks clamd's INSTREAM command (see clamd(8)): the command
``zINSTREAM\\0``, then the file in chunks, each preceded by its length as a
4-byte big-endian integer, ended by a zero-length chunk; clamd answers one
NUL-terminated line, ``stream: OK``, ``stream: <signature> FOUND`` or
``<reason> ERROR``. The daemon listens on a unix socket (a path) or on TCP
(``host:port``).

SECURITY: the file is hostile, the daemon is trusted but may be down, slow
or misconfigured. Every scan runs under a time limit; the reply is read up to
a fixed size; a file larger than the daemon accepts (its StreamMaxLength,
which ``clamav.max_size`` must not exceed) is never sent and never called
clean: it is reported as too big. A daemon that refuses the stream for its
size, or says that a file broke one of its limits (``Heuristics.Limits.
Exceeded`` with AlertExceedsMax), is reported the same way; so is a stream
whose connection clamd closes before its answer could be read, which it
does past StreamMaxLength (its answer can be lost in the race with our
writes). Any other failure is an error for the antivirus check to turn
into ``CLAMAV_FAIL``.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from mailward.attachments.files import FileNode
from mailward.config import parse_hostport
from mailward.content.antivirus import CLEAN, EngineResult

CHUNK_SIZE = 64 * 1024
# Time a readiness probe (PING) may take: a daemon that answers a scan in
# seconds answers a PING at once, and readiness must not hang on a dead host.
PROBE_TIMEOUT = 2.0
MAX_REPLY = 4096
_LIMIT_SIGNATURE = "Heuristics.Limits.Exceeded"


class ClamdError(Exception):
    """clamd could not be reached, timed out, or answered with an error."""


class StreamCut(ClamdError):
    """clamd closed the connection while a stream was sent, and no answer came."""


@dataclass(frozen=True, slots=True)
class ClamdReply:
    """What clamd said of one stream."""

    status: str         # "OK", "FOUND", "TOO_BIG"
    signature: str = ""
    detail: str = ""


def parse_reply(line: bytes) -> ClamdReply:
    """parse_reply - one INSTREAM answer; ClamdError for ERROR and nonsense."""
    text = line.rstrip(b"\0\r\n").decode("utf-8", "replace").strip()
    _, sep, rest = text.partition(": ")
    body = rest if sep else text
    if body == "OK":
        return ClamdReply("OK")
    if body.endswith(" FOUND"):
        signature = body[:-len(" FOUND")].strip()
        if signature.startswith(_LIMIT_SIGNATURE):
            return ClamdReply("TOO_BIG", signature, f"clamd: {signature}")
        return ClamdReply("FOUND", signature)
    if "size limit exceeded" in body.lower():
        return ClamdReply("TOO_BIG", detail=f"clamd refused the stream: {body}")
    raise ClamdError(f"clamd answered {text[:200]!r}")


class ClamdClient:
    """A client of one clamd: unix socket path or host:port."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        if not self.unix:
            parse_hostport(address, 3310)  # raises ValueError naming the address

    @property
    def unix(self) -> bool:
        return self.address.startswith("/") or self.address.startswith("unix:")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix:
            return await asyncio.open_unix_connection(self.address.removeprefix("unix:"))
        host, port = parse_hostport(self.address, 3310)
        return await asyncio.open_connection(host, port)

    async def _command(self, request: bytes, body: bytes | None = None,
                       timeout: float | None = None) -> bytes:
        """_command - send one z-command (and a stream); the NUL-ended reply."""
        timeout = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._connect()
                # The reply is read while the stream is sent: clamd answers a
                # stream over its StreamMaxLength at once and closes, and on a
                # unix socket an answer not yet read is lost with the close.
                reply = asyncio.ensure_future(_read_reply(reader))
                cut = False
                try:
                    writer.write(request)
                    if body is not None:
                        await _send_stream(writer, body, reply)
                    await writer.drain()
                except (BrokenPipeError, ConnectionResetError):
                    cut = True
                try:
                    return await reply
                except (ConnectionError, ClamdError) as error:
                    if cut and body is not None:
                        raise StreamCut(f"clamd closed the connection while the stream was "
                                        f"sent, as it does past its size limit ({error})"
                                        ) from None
                    raise
                finally:
                    reply.cancel()
                    writer.close()
        except TimeoutError:
            raise ClamdError(f"clamd at {self.address} did not answer within "
                             f"{timeout:g}s") from None
        except OSError as error:
            raise ClamdError(f"clamd at {self.address}: {error.strerror or error}") from None

    async def ping(self, timeout: float | None = None) -> bool:
        """ping - clamd answers PONG (within timeout, default the scan timeout)."""
        return await self._command(b"zPING\0", timeout=timeout) == b"PONG"

    async def version(self) -> str:
        return (await self._command(b"zVERSION\0")).decode("utf-8", "replace")

    async def instream(self, data: bytes) -> ClamdReply:
        """instream - scan bytes with INSTREAM."""
        try:
            reply = await self._command(b"zINSTREAM\0", data)
        except StreamCut as cut:
            return ClamdReply("TOO_BIG", detail=str(cut))
        return parse_reply(reply)


async def _send_stream(writer: asyncio.StreamWriter, data: bytes,
                       reply: asyncio.Future) -> None:
    """_send_stream - INSTREAM chunks and the end mark; stops when clamd answers."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_SIZE):
        if reply.done():
            return
        chunk = view[start:start + CHUNK_SIZE]
        writer.write(struct.pack(">I", len(chunk)))
        writer.write(chunk)
        await writer.drain()
    writer.write(struct.pack(">I", 0))


async def _read_reply(reader: asyncio.StreamReader) -> bytes:
    """_read_reply - bytes up to the NUL (or the end), at most MAX_REPLY."""
    received = b""
    while b"\0" not in received and len(received) < MAX_REPLY:
        piece = await reader.read(MAX_REPLY - len(received))
        if not piece:
            break
        received += piece
    if not received:
        raise ClamdError("clamd closed the connection without an answer")
    return received.split(b"\0", 1)[0]


class ClamavEngine:
    """The antivirus engine backed by clamd."""

    name = "clamav"
    symbol = "CLAMAV_VIRUS"
    fail_symbol = "CLAMAV_FAIL"
    too_big_symbol = "CLAMAV_TOO_BIG"

    def __init__(self, client: ClamdClient, max_size: int, concurrency: int = 4) -> None:
        self.client = client
        self.max_size = max_size
        self._slots = asyncio.Semaphore(concurrency)

    async def probe(self) -> str:
        """probe - why clamd cannot scan now, or "" when it answers PING."""
        try:
            if await self.client.ping(PROBE_TIMEOUT):
                return ""
        except ClamdError as error:
            return str(error)
        return f"clamd at {self.client.address} did not answer PING with PONG"

    async def scan(self, node: FileNode) -> EngineResult:
        if node.size > self.max_size:
            return EngineResult(too_big=f"{node.size} bytes, over clamav.max_size "
                                        f"of {self.max_size}")
        async with self._slots:
            reply = await self.client.instream(node.data)
        if reply.status == "FOUND":
            return EngineResult(True, reply.signature)
        if reply.status == "TOO_BIG":
            return EngineResult(too_big=reply.detail)
        return CLEAN
