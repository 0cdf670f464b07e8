"""Retention: what the data directory keeps, and for how long.

Three kinds of things grow in the data directory until they are removed:
delivered originals under ``archive/DAY/``, copies of messages that could not
be judged under ``spool/parked/``, and quarantine items. ``[retention]`` says
how long each is kept (0 = for ever). One sweep removes what is older: the
running gateway does it every ``retention.interval`` and ``mailward prune``
once by hand (``--dry-run`` only counts). Every removal is logged.

An archive day is removed file by file once the whole day is older than
``retention.archive``; a parked copy (its ``.eml`` and ``.reason``) by the
time it was parked. A quarantine item expires through ``Quarantine.delete``,
as a console delete: its bytes go, its record is kept for the trace and its
pending release requests are closed with the reason.

SECURITY: the sweep removes files only below the data directory. Each
directory is opened without following a symbolic link and listed and
unlinked through its descriptor, so a link put in place of a directory or a
file is skipped, never followed, and a rename meanwhile cannot point the
sweep elsewhere. Only names of the spool's own form are touched, and never
the file of a message that still has a delivery to make.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import select

from mailward.config import shown_duration
from mailward.pipeline import QueueLog
from mailward.quarantine import Quarantine, QuarantineError, pulled_path
from mailward.smtp.queue import DUE
from mailward.store.models import Delivery, QuarantineItem

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.retention")

KINDS = ("archive", "parked", "quarantine")
ACTOR = "retention"
# Queue ids looked up in the store at once; quarantine items expired per query.
BATCH = 500

_SPOOL_NAME = re.compile(r"([A-Za-z0-9]+)\.(eml|reason)")
_DAY_NAME = re.compile(r"\d{8}")


@dataclass
class Tally:
    """What one kind lost (or would lose) in a sweep."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass
class Sweep:
    """The outcome of one sweep, per kind; kept counts files still to deliver."""

    dry_run: bool = False
    removed: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    kept: int = 0

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = [f"{kind} {tally.count} ({tally.bytes} bytes)"
                 for kind, tally in self.removed.items()]
        kept = f"; kept {self.kept} with a delivery still to make" if self.kept else ""
        return f"{verb}: {', '.join(parts)}{kept}"


# Directories, opened without following links.


def _open_below(root: Path, *parts: str) -> int | None:
    """_open_below - a descriptor of root/parts, or None if one part is no real
    directory (missing, a file, or a symbolic link)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            inner = os.open(part, flags, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
    except OSError as error:
        os.close(descriptor)
        if not isinstance(error, FileNotFoundError):
            log.warning("%s is not a directory of the data directory "
                        "(a link?); skipped: %s", Path(root, *parts), error.strerror)
        return None
    return descriptor


def _entries(descriptor: int) -> Iterator[tuple[str, os.stat_result]]:
    """_entries - (name, lstat) of each entry of an open directory."""
    for name in os.listdir(descriptor):
        try:
            yield name, os.stat(name, dir_fd=descriptor, follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile
            continue


def _spool_files(descriptor: int) -> dict[str, list[tuple[str, os.stat_result]]]:
    """_spool_files - regular files named QUEUEID.eml or .reason, by queue id."""
    found: dict[str, list[tuple[str, os.stat_result]]] = {}
    for name, info in _entries(descriptor):
        match = _SPOOL_NAME.fullmatch(name)
        if match and stat.S_ISREG(info.st_mode):
            found.setdefault(match.group(1), []).append((name, info))
    return found


def _unlink(descriptor: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=descriptor)
    except FileNotFoundError:
        pass


# The sweep.


class Retention:
    """One sweep over the data directory and the quarantine of one gateway."""

    def __init__(self, gateway: "Gateway") -> None:
        self.gateway = gateway
        self.settings = gateway.settings.retention
        self.root = gateway.settings.data_dir

    async def sweep(self, dry_run: bool = False, now: datetime | None = None) -> Sweep:
        """sweep - remove (or, dry, count) what is past its age; what it did."""
        now = now or datetime.now(UTC)
        result = Sweep(dry_run)
        for kind, sweep in (("archive", self._archive), ("parked", self._parked),
                            ("quarantine", self._quarantine)):
            age = getattr(self.settings, kind)
            if age:  # 0 keeps this kind for ever
                await sweep(result, now - timedelta(seconds=age))
        return result

    async def _undelivered(self, queue_ids: list[str]) -> set[str]:
        """_undelivered - the queue ids with a delivery still pending or deferred."""
        found: set[str] = set()
        async with self.gateway.services.store.reading() as session:
            for start in range(0, len(queue_ids), BATCH):
                chunk = queue_ids[start:start + BATCH]
                found.update((await session.scalars(select(Delivery.queue_id).where(
                    Delivery.queue_id.in_(chunk), Delivery.status.in_(DUE)))).all())
        return found

    async def _remove_files(self, result: Sweep, kind: str, descriptor: int,
                            where: str, groups: dict[str, list]) -> None:
        """_remove_files - each queue id's files, unless it is still to be delivered."""
        for queue_id in await self._undelivered(sorted(groups)):
            QueueLog(log, queue_id).warning("%s copy in %s kept: a delivery "
                                            "is still to be made", kind, where)
            groups.pop(queue_id)
            result.kept += 1
        for queue_id, files in sorted(groups.items()):
            size = sum(info.st_size for _, info in files)
            result.removed[kind].add(size)
            if result.dry_run:
                continue
            for name, _ in files:
                await asyncio.to_thread(_unlink, descriptor, name)
            QueueLog(log, queue_id).info("removed %s copy from %s (%d bytes)",
                                         kind, where, size)

    async def _archive(self, result: Sweep, cutoff: datetime) -> None:
        """_archive - delivered originals of every day that ended before cutoff."""
        archive = _open_below(self.root, "archive")
        if archive is None:
            return
        try:
            for day, info in sorted(_entries(archive)):
                if not (_DAY_NAME.fullmatch(day) and stat.S_ISDIR(info.st_mode)):
                    continue
                try:
                    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
                except ValueError:
                    continue
                if start + timedelta(days=1) > cutoff:
                    continue
                await self._archive_day(result, archive, day)
        finally:
            os.close(archive)

    async def _archive_day(self, result: Sweep, archive: int, day: str) -> None:
        descriptor = _open_below(self.root, "archive", day)
        if descriptor is None:
            return
        try:
            groups = {queue_id: [(n, i) for n, i in files if n.endswith(".eml")]
                      for queue_id, files in _spool_files(descriptor).items()}
            await self._remove_files(result, "archive", descriptor, f"archive/{day}",
                                     {q: files for q, files in groups.items() if files})
            if not result.dry_run and not os.listdir(descriptor):
                os.rmdir(day, dir_fd=archive)
                log.info("removed the empty archive day %s", day)
        finally:
            os.close(descriptor)

    async def _parked(self, result: Sweep, cutoff: datetime) -> None:
        """_parked - parked copies (and their reasons) parked before cutoff."""
        descriptor = _open_below(self.root, "spool", "parked")
        if descriptor is None:
            return
        try:
            limit = cutoff.timestamp()
            old = {queue_id: files for queue_id, files in _spool_files(descriptor).items()
                   if max(info.st_mtime for _, info in files) < limit}
            await self._remove_files(result, "parked", descriptor, "spool/parked", old)
        finally:
            os.close(descriptor)

    async def _quarantine(self, result: Sweep, cutoff: datetime) -> None:
        """_quarantine - expire held items created before cutoff, as a console delete.

        Only items whose bytes are in this data directory: with several nodes,
        each expires the items it holds.
        """
        quarantine = Quarantine(self.gateway)
        why = f"expired after {shown_duration(self.settings.quarantine)} in the quarantine"
        after = ""
        while True:
            async with self.gateway.services.store.reading() as session:
                items = (await session.scalars(select(QuarantineItem).where(
                    QuarantineItem.status == "held", QuarantineItem.created_at < cutoff,
                    QuarantineItem.id > after).order_by(QuarantineItem.id)
                    .limit(BATCH))).all()
            if not items:
                return
            after = items[-1].id
            for item in items:
                size = self._held_size(item)
                if size is None:
                    continue
                if result.dry_run:
                    result.removed["quarantine"].add(size)
                    continue
                try:
                    await quarantine.delete(item.id, by=ACTOR, why=why)
                except QuarantineError as error:  # released or deleted meanwhile
                    log.info("quarantine item %s not expired: %s", item.id, error)
                    continue
                result.removed["quarantine"].add(size)
                QueueLog(log, item.queue_id).info(
                    "quarantine item %s expired (%d bytes, held since %s)",
                    item.id, size, item.created_at.isoformat(timespec="seconds"))

    def _held_size(self, item: QuarantineItem) -> int | None:
        """_held_size - bytes of an item's file here, or None if it is not here."""
        try:
            if item.copy_id is not None:
                parts = ("quarantine", "pulled")
                name = pulled_path(self.root, item.id).name
            else:
                parts, name = ("quarantine",), self.gateway.spool.held(item.queue_id).name
        except (ValueError, QuarantineError):  # an id that names no file of ours
            return None
        descriptor = _open_below(self.root, *parts)
        if descriptor is None:
            return None
        try:
            info = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(descriptor)
        return info.st_size if stat.S_ISREG(info.st_mode) else None


async def run(gateway: "Gateway") -> None:
    """run - sweep at start and every ``retention.interval`` (``mailward serve``)."""
    retention = Retention(gateway)
    while True:
        try:
            result = await retention.sweep()
            if any(t.count for t in result.removed.values()) or result.kept:
                log.info("retention sweep %s", result.summary())
        except Exception:
            log.exception("retention sweep failed; trying again next interval")
        await asyncio.sleep(retention.settings.interval)


__all__ = ["Retention", "Sweep", "Tally", "run"]
