"""The spool: message bytes on disk, durable before the sender hears 250.

Layout under the data directory:

    spool/queue/     received: written and fsynced during DATA, before the
                     sender is answered; stays here until every delivery is
                     final (the store records the state)
    spool/parked/    could not be judged (451 sent; the sender retries); kept
                     with the reason for an administrator (``mailward parked``)
    archive/DAY/     delivered originals, kept for retro-scans and reports
    quarantine/      held for review

Parked copies, archive days and quarantine items are removed after their
``[retention]`` age (``mailward.retention``); the queue is never swept.

A spool file is the message as received, with our trace header, preceded by
one ``X-Mailward-Envelope:`` line (the SMTP envelope as JSON) so that a
message found after a crash without a record in the store can be judged
again: a message is never lost, and a crash between the fsync and the 250
at worst delivers one the sender will also retry. Delivery strips every
X-Mailward-* header, ours included.

Writes go to a temporary name, are fsynced, renamed into place, and the
directory is fsynced, so a crash leaves either the whole file or none.
"""

import json
import logging
import os
from dataclasses import dataclass
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


ENVELOPE_HEADER = b"X-Mailward-Envelope: "


def with_envelope(envelope: dict, raw: bytes) -> bytes:
    """with_envelope - the spool form: one envelope header line, then the message."""
    line = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    return ENVELOPE_HEADER + line.encode("utf-8") + b"\r\n" + raw


def split_envelope(data: bytes) -> tuple[dict | None, bytes]:
    """split_envelope - (envelope, message bytes) of a spool file."""
    if not data.startswith(ENVELOPE_HEADER):
        return None, data
    line, _, raw = data.partition(b"\r\n")
    try:
        return json.loads(line[len(ENVELOPE_HEADER):]), raw
    except ValueError:
        return None, raw


class Spool:
    """Named places for message bytes, by queue id."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.queue = data_dir / "spool" / "queue"
        self.parked = data_dir / "spool" / "parked"
        self.archive = data_dir / "archive"
        self.quarantine = data_dir / "quarantine"
        for directory in (self.queue, self.parked, self.archive, self.quarantine):
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _name(queue_id: str) -> str:
        if not queue_id.isalnum():
            raise ValueError(f"bad queue id {queue_id!r}")
        return f"{queue_id}.eml"

    def write(self, queue_id: str, envelope: dict, raw: bytes) -> Path:
        """write - the received message, durably, before any reply."""
        path = self.queue / self._name(queue_id)
        write_durable(path, with_envelope(envelope, raw))
        return path

    def hold(self, queue_id: str) -> Path:
        """hold - queue to quarantine."""
        target = self.quarantine / self._name(queue_id)
        move_durable(self.queue / self._name(queue_id), target)
        return target

    def unhold(self, queue_id: str) -> Path:
        """unhold - quarantine back to the queue (a release)."""
        target = self.queue / self._name(queue_id)
        move_durable(self.quarantine / self._name(queue_id), target)
        return target

    def park(self, queue_id: str, reason: str) -> Path:
        """park - keep the bytes of a message that could not be judged."""
        target = self.parked / self._name(queue_id)
        source = self.queue / self._name(queue_id)
        if source.exists():
            move_durable(source, target)
            write_durable(target.with_suffix(".reason"), reason.encode("utf-8", "replace"))
        return target

    def discard(self, queue_id: str) -> None:
        """discard - drop the bytes of a rejected message (the sender keeps them)."""
        (self.queue / self._name(queue_id)).unlink(missing_ok=True)

    def queued(self, queue_id: str) -> Path:
        return self.queue / self._name(queue_id)

    def held(self, queue_id: str) -> Path:
        return self.quarantine / self._name(queue_id)

    def archived(self, queue_id: str, day: datetime) -> Path:
        return self.archive / day.strftime("%Y%m%d") / self._name(queue_id)

    def finish(self, queue_id: str, day: datetime | None = None) -> None:
        """finish - every delivery is final: queue to archive.

        Not fsynced: after a crash the file is found in the queue again, and
        the store says it is done.
        """
        source = self.queued(queue_id)
        if source.exists():
            target = self.archived(queue_id, day or datetime.now(UTC))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

    def find(self, queue_id: str) -> Path | None:
        """find - wherever the bytes of a message are now."""
        name = self._name(queue_id)
        for directory in (self.queue, self.quarantine, self.parked):
            if (directory / name).exists():
                return directory / name
        for day in sorted(self.archive.iterdir(), reverse=True):
            if (day / name).exists():
                return day / name
        return None

    def read(self, path: Path) -> tuple[dict | None, bytes]:
        """read - (envelope, message bytes) of a spool, quarantine or archive file."""
        return split_envelope(path.read_bytes())

    def message_bytes(self, queue_id: str) -> bytes | None:
        """message_bytes - the message as received (trace header included), or None."""
        path = self.find(queue_id)
        return None if path is None else self.read(path)[1]

    def queued_ids(self) -> list[str]:
        return sorted(p.stem for p in self.queue.glob("*.eml"))

    def parked_items(self) -> list["Parked"]:
        """parked_items - the messages that could not be judged, oldest first.

        The sender was answered 451 and retries; these copies say what could not be
        judged and why, for an administrator to look into (``mailward parked``).
        """
        found = []
        for path in self.parked.glob("*.eml"):
            try:
                stat = path.stat()
                with path.open("rb") as handle:
                    envelope, _ = split_envelope(handle.read(64 * 1024))
            except FileNotFoundError:  # deleted meanwhile
                continue
            try:
                reason = path.with_suffix(".reason").read_bytes()[:2000]
            except FileNotFoundError:
                reason = b""
            found.append(Parked(path.stem, datetime.fromtimestamp(stat.st_mtime, UTC),
                                stat.st_size, envelope or {},
                                reason.decode("utf-8", "replace")))
        return sorted(found, key=lambda item: (item.parked_at, item.queue_id))

    def unpark(self, queue_id: str) -> bool:
        """unpark - delete a parked copy and its reason; whether there was one."""
        path = self.parked / self._name(queue_id)
        existed = path.exists()
        path.unlink(missing_ok=True)
        path.with_suffix(".reason").unlink(missing_ok=True)
        return existed


@dataclass(frozen=True)
class Parked:
    """A parked copy: when, how large, its envelope and why it was not judged."""

    queue_id: str
    parked_at: datetime
    size: int
    envelope: dict
    reason: str
