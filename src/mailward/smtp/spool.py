"""The spool: message bytes on disk, durable before the sender hears 250.

Layout under the data directory:

    spool/incoming/  being judged; the sender has not been answered yet
    spool/queue/     accepted (250 sent), waiting for delivery
    spool/parked/    could not be judged (451 sent); kept for a re-run
    spool/unacked/   found at start-up without an acceptance: the sender
                     was never told 250 and will retry, so these are kept
                     for inspection, not delivered
    archive/DAY/     delivered originals, kept for retro-scans and reports
    quarantine/      held for review

Every write goes to a temporary name, is fsynced, renamed into place, and
the directory is fsynced, so a crash leaves either the whole file or none.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("mailward.smtp")


def fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_durable(path: Path, data: bytes) -> None:
    """write_durable - write, fsync, rename into place, fsync the directory."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def move_durable(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


class Spool:
    """Named places for message bytes, by queue id."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.incoming = data_dir / "spool" / "incoming"
        self.queue = data_dir / "spool" / "queue"
        self.parked = data_dir / "spool" / "parked"
        self.unacked = data_dir / "spool" / "unacked"
        self.archive = data_dir / "archive"
        self.quarantine = data_dir / "quarantine"
        for directory in (self.incoming, self.queue, self.parked, self.unacked,
                          self.archive, self.quarantine):
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _name(queue_id: str) -> str:
        if not queue_id.isalnum():
            raise ValueError(f"bad queue id {queue_id!r}")
        return f"{queue_id}.eml"

    def write_incoming(self, queue_id: str, data: bytes) -> Path:
        path = self.incoming / self._name(queue_id)
        write_durable(path, data)
        return path

    def accept(self, queue_id: str) -> Path:
        """accept - incoming to queue: the message will be delivered."""
        target = self.queue / self._name(queue_id)
        move_durable(self.incoming / self._name(queue_id), target)
        return target

    def hold(self, queue_id: str) -> Path:
        """hold - incoming to quarantine."""
        target = self.quarantine / self._name(queue_id)
        move_durable(self.incoming / self._name(queue_id), target)
        return target

    def park(self, queue_id: str, reason: str) -> Path:
        """park - keep the bytes of a message that could not be judged."""
        target = self.parked / self._name(queue_id)
        source = self.incoming / self._name(queue_id)
        if source.exists():
            move_durable(source, target)
            write_durable(target.with_suffix(".reason"), reason.encode("utf-8", "replace"))
        return target

    def discard(self, queue_id: str) -> None:
        """discard - drop the bytes of a rejected message (the sender keeps them)."""
        (self.incoming / self._name(queue_id)).unlink(missing_ok=True)

    def queued(self, queue_id: str) -> Path:
        return self.queue / self._name(queue_id)

    def held(self, queue_id: str) -> Path:
        return self.quarantine / self._name(queue_id)

    def archived(self, queue_id: str, day: datetime) -> Path:
        return self.archive / day.strftime("%Y%m%d") / self._name(queue_id)

    def finish(self, queue_id: str, day: datetime | None = None) -> None:
        """finish - every delivery is final: queue to archive."""
        source = self.queued(queue_id)
        if source.exists():
            move_durable(source, self.archived(queue_id, day or datetime.now(UTC)))

    def find(self, queue_id: str) -> Path | None:
        """find - wherever the bytes of a message are now."""
        name = self._name(queue_id)
        for directory in (self.queue, self.quarantine, self.incoming, self.parked):
            if (directory / name).exists():
                return directory / name
        for day in sorted(self.archive.iterdir(), reverse=True):
            if (day / name).exists():
                return day / name
        return None

    def leftovers(self) -> list[Path]:
        """leftovers - files in incoming: judged in a process that died."""
        return sorted(p for p in self.incoming.glob("*.eml"))

    def set_aside(self, path: Path) -> Path:
        target = self.unacked / path.name
        move_durable(path, target)
        log.warning("%s: found without an acceptance after a restart; the sender "
                    "was not answered 250 and will retry; kept in %s",
                    path.stem, target.parent)
        return target
