"""A small pool of worker processes that run the per-file analysers.

The analysers (oletools, pypdf, pefile, the HTML scanner) parse hostile
bytes, and a crafted file can make a parser spin or swell. Each file's
analysis is sent to a worker process, once, with its bytes; the answer is
awaited for at most ``file_seconds``. A worker that does not answer in
time is killed and replaced, and the file becomes ``ATTACH_ANALYSIS_TIMEOUT``;
a worker limited in address space (``file_memory``, RLIMIT_AS) turns a
parser's swelling into a MemoryError, reported as ``ATTACH_ANALYSIS_MEMORY``;
a worker that dies is replaced and the file is ``ATTACH_ANALYSIS_FAILED``.
Workers are started once from a forkserver that has imported the
analysers, and reused, so the hand-off costs one pipe round trip a file.
As with any forkserver, a worker first imports the program's main module:
a script that builds a gateway must do so under ``if __name__ ==
"__main__":``, or each worker runs the script again and its files time out.

SECURITY: a worker holds one file's bytes at a time and nothing else of
the message; the message is never crashed by what happens in a worker.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import resource
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable

from mailward.attachments.files import FileNode, Note

log = logging.getLogger("mailward.attachments")

_PRELOAD = ["mailward.attachments.check"]


@dataclass(slots=True)
class Outcome:
    """What a worker made of one file: notes, or why there are none."""

    notes: list[Note]
    error: str = ""  # "timeout", "memory", "died" or an exception's text
    seconds: float = 0.0  # the time limit that was applied


class _Shipped(FileNode):
    """A file rebuilt in a worker: its path as shown, its members by name."""

    def __init__(self, name: str, path: str, kind: str, data: bytes,
                 members: list[str]) -> None:
        super().__init__(name, data)
        self.shown = path
        self.kind = kind  # type: ignore[misc]
        self.children = [FileNode(member, b"") for member in members]

    @property
    def path(self) -> str:  # type: ignore[override]
        return self.shown


def _serve(connection: Connection, memory: int) -> None:
    """_serve - a worker: answer (analyser, file) requests until the pipe closes."""
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    while True:
        try:
            analyser, name, path, kind, data, members = connection.recv()
        except (EOFError, OSError):
            return
        try:
            notes = analyser(_Shipped(name, path, kind, data, members))
            answer = Outcome(list(notes))
        except MemoryError:
            answer = Outcome([], "memory")
        except Exception as error:  # a parser failure is reported, never fatal
            answer = Outcome([], f"{type(error).__name__}: {str(error)[:160]}")
        del data
        try:
            connection.send(answer)
        except MemoryError:
            connection.send(Outcome([], "memory"))


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context, memory: int) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, memory), daemon=True,
                                       name="mailward-analyser")
        self.process.start()
        child.close()

    def kill(self) -> None:
        """kill - end the process at once and reap it."""
        self.process.kill()
        self.process.join(5)
        self.connection.close()

    def cpu_seconds(self) -> float:
        """cpu_seconds - the user and system CPU time the process has used."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0


class AnalyserPool:
    """Worker processes for the analysers, with a time and a memory limit per file."""

    def __init__(self, size: int = 2, file_seconds: float = 10.0,
                 memory: int = 1 << 30) -> None:
        self.size = max(size, 1)
        self.file_seconds = file_seconds
        self.memory = memory
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._idle: list[_Worker] = []
        self._started = 0
        self._lock = threading.Condition()
        self._closed = False
        self._spent = 0.0  # CPU time of workers already killed or closed
        atexit.register(self.close)

    def _take(self) -> _Worker:
        """_take - an idle worker, started if fewer than size exist; waits otherwise."""
        with self._lock:
            while not self._idle and self._started >= self.size:
                self._lock.wait()
            if self._idle:
                return self._idle.pop()
            self._started += 1
        try:
            return _Worker(self._context, self.memory)
        except Exception:
            with self._lock:
                self._started -= 1
                self._lock.notify()
            raise

    def _give(self, worker: _Worker | None) -> None:
        """_give - return a worker to the pool, or count a killed one as gone."""
        with self._lock:
            if worker is None:
                self._started -= 1
            else:
                self._idle.append(worker)
            self._lock.notify()

    def run(self, analyser: Callable[[FileNode], list[Note]], node: FileNode,
            seconds: float | None = None) -> Outcome:
        """run - one analyser on one file in a worker, within the time limit."""
        seconds = self.file_seconds if seconds is None else min(seconds, self.file_seconds)
        worker = self._take()
        started = time.monotonic()
        try:
            worker.connection.send((analyser, node.name, node.path, node.kind, node.data,
                                    [child.name for child in node.children]))
            if worker.connection.poll(max(seconds, 0.0)):
                outcome = worker.connection.recv()
                self._give(worker)
                return outcome
            error = "timeout"
            log.warning("analyser %s on %s: no answer in %.1fs, worker killed",
                        getattr(analyser, "__name__", analyser), node.sha256[:12],
                        time.monotonic() - started)
        except (EOFError, OSError) as died:
            error = "died"
            log.warning("analyser worker died on %s: %s", node.sha256[:12], died)
        except Exception as failure:  # e.g. an analyser that cannot be pickled
            error = f"{type(failure).__name__}: {str(failure)[:160]}"
        self._spent += worker.cpu_seconds()
        worker.kill()
        self._give(None)
        return Outcome([], error, seconds)

    def cpu_seconds(self) -> float:
        """cpu_seconds - CPU time used by the workers so far (for benchmarks)."""
        with self._lock:
            workers = list(self._idle)
        return self._spent + sum(worker.cpu_seconds() for worker in workers)

    def close(self) -> None:
        """close - end every idle worker."""
        with self._lock:
            workers, self._idle = self._idle, []
            self._started -= len(workers)
        for worker in workers:
            worker.kill()


_SHARED: dict[tuple[int, float, int], AnalyserPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(size: int, file_seconds: float, memory: int) -> AnalyserPool:
    """shared_pool - one pool per process and settings, however many checks are built."""
    key = (size, file_seconds, memory)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = AnalyserPool(size, file_seconds, memory)
        return _SHARED[key]


def shared_cpu_seconds() -> float:
    """shared_cpu_seconds - CPU time used so far by the workers of every shared pool."""
    with _SHARED_LOCK:
        pools = list(_SHARED.values())
    return sum(pool.cpu_seconds() for pool in pools)
