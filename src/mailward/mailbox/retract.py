"""Retract and restore delivered copies: one service over the mailbox adapters.

The post-delivery response, user reports and the console all pull mail back
through this module. A pull moves the copy into the recipient's Quarantine
(or any folder), records in ``retractions`` whether it had been read and
where it was, and updates the copy's row in the index; a restore moves it
back where it was, as itself (the same message, flags and date, never a
forward). A pull is tried ``trap.pull_attempts`` times with a doubling
delay; the last failure calls the alert hook, so a copy that stays in a
mailbox is never silent.

A copy already where it was sent (a repeated request, a retro-scan run
twice) is answered "already" without touching the mailbox: nothing is
pulled twice.

With ``trap.retract_mode = "hold"`` a pull into Quarantine takes the copy
out of the mailbox entirely: its bytes, flags and arrival time are written
durably under ``quarantine/pulled/`` and recorded as a quarantine item
linked to the copy and incident *before* the mailbox copy is removed, so a
crash at any step leaves the copy in the mailbox, in the quarantine, or in
both (the next attempt finishes the removal), never in neither. A restore
puts the held bytes back into the folder the copy came from, after looking
whether it is back already, so a repeated restore never doubles it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select

from mailward.mailbox.base import (FOLDERS, HELD, INBOX, QUARANTINE, CopyGone, CopyRef,
                                   Fetched, Mailbox, MailboxError, can_hold)
from mailward.quarantine import close_requests, new_quarantine_id, pulled_path
from mailward.smtp.spool import write_durable
from mailward.store.models import (Copy, Incident, IncidentCopy, QuarantineItem,
                                   Retraction)

if TYPE_CHECKING:
    from mailward.config import Settings
    from mailward.store import Store

log = logging.getLogger("mailward.trap")

# Outcomes of one pull or restore.
PULLED = "pulled"
RESTORED = "restored"
MOVED = "moved"
ALREADY = "already"
KEPT = "kept"          # a rule said leave it (spam already read)
EXEMPT = "exempt"      # the mailbox is never touched
GONE = "gone"          # the copy or its mailbox no longer exists
FAILED = "failed"      # every attempt failed; an alert was raised

Alert = Callable[["PullResult"], Awaitable[None]]


class _GiveUp(Exception):
    """A pull or restore that no retry can mend (its bytes or mailbox are gone)."""


class NoAdapter(MailboxError):
    """No adapter is configured for where a copy lives: a setting to fix, not a retry."""


@dataclass(slots=True)
class PullResult:
    """What one retract, move or restore did to one copy."""

    copy_id: int
    recipient: str
    queue_id: str
    status: str
    was_read: bool | None = None
    from_folder: str = ""
    to_folder: str = ""
    attempts: int = 0
    error: str = ""
    retraction_id: int = 0

    @property
    def ok(self) -> bool:
        return self.status in (PULLED, RESTORED, MOVED, ALREADY)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retractor:
    """Pulls, moves and restores copies through the adapter that holds each."""

    def __init__(self, store: "Store", adapters: dict[str, Mailbox], *,
                 attempts: int = 3, backoff: float = 2.0, concurrency: int = 8,
                 exempt: Iterable[str] = (), alert: Alert | None = None,
                 mode: str = "folder", data_dir: Path | None = None,
                 forward_hops: int = 0) -> None:
        if mode not in ("folder", "hold"):
            raise ValueError(f"retract mode {mode!r} is neither folder nor hold")
        if mode == "hold" and data_dir is None:
            raise ValueError("the hold mode needs the data directory to keep copies in")
        self.store = store
        self.adapters = adapters
        self.mode = mode
        self.forward_hops = forward_hops
        self.data_dir = data_dir
        self.attempts = attempts
        self.backoff = backoff
        self.exempt = {address.lower() for address in exempt}
        self.alert = alert
        self._slots = asyncio.Semaphore(concurrency)

    @classmethod
    def from_settings(cls, settings: "Settings", store: "Store",
                      alert: Alert | None = None) -> "Retractor":
        trap = settings.trap
        return cls(store, adapters_from_settings(settings), attempts=trap.pull_attempts,
                   backoff=trap.pull_backoff, concurrency=trap.pull_concurrency,
                   exempt=trap.exempt_mailboxes, alert=alert, mode=trap.retract_mode,
                   data_dir=settings.data_dir,
                   forward_hops=trap.forward_hops if trap.follow_forwards else 0)

    def adapter_for(self, copy: Copy) -> Mailbox:
        adapter = self.adapters.get(copy.mailbox)
        if adapter is None:
            raise NoAdapter(f"no mailbox adapter for copies delivered via {copy.mailbox!r} "
                               "(set trap.remote_mailbox to imap or graph)")
        return adapter

    # The three operations.

    async def retract(self, copy: Copy | int, reason: str, *, folder: str = QUARANTINE,
                      incident_id: int | None = None, actor: str = "",
                      only_unread: bool = False) -> PullResult:
        """retract - pull one copy into folder, recording read state and origin."""
        row = await self._load(copy)
        if row.recipient.lower() in self.exempt:
            return await self._record(row, "retract", reason, EXEMPT, row.folder, row.folder,
                                      incident_id, actor)
        if folder == QUARANTINE and (self.mode == "hold" or row.folder == HELD):
            return await self._hold(row, reason, incident_id, actor, only_unread)
        return await self._move(row, folder, "retract", reason, incident_id, actor,
                                only_unread=only_unread)

    async def move_all(self, copies: Iterable[Copy | int], folder: str, reason: str, *,
                       incident_id: int | None = None, actor: str = "",
                       only_unread: bool = False) -> list[PullResult]:
        """move_all - move many copies (bounded concurrency); one result each."""
        action = "retract" if folder == QUARANTINE else "move"

        async def one(copy: Copy | int) -> PullResult:
            row = await self._load(copy)
            if action == "retract" and row.recipient.lower() in self.exempt:
                return await self._record(row, action, reason, EXEMPT, row.folder,
                                          row.folder, incident_id, actor)
            if action == "retract" and (self.mode == "hold" or row.folder == HELD):
                return await self._hold(row, reason, incident_id, actor, only_unread)
            return await self._move(row, folder, action, reason, incident_id, actor,
                                    only_unread=only_unread)

        return list(await asyncio.gather(*(one(copy) for copy in copies)))

    async def restore(self, copy: Copy | int, reason: str = "restored", *,
                      actor: str = "") -> PullResult:
        """restore - move a pulled copy back to the folder it was pulled from."""
        row = await self._load(copy)
        held = await self._held_item(row.id)
        if held is not None:
            return await self._unhold(row, held, reason, actor)
        async with self.store.session() as session:
            last = await session.scalar(
                select(Retraction).where(Retraction.copy_id == row.id,
                                         Retraction.status.in_((PULLED, MOVED)),
                                         Retraction.action.in_(("retract", "move")))
                .order_by(Retraction.id.desc()).limit(1))
        origin = last.from_folder if last is not None and last.from_folder else INBOX
        if origin == QUARANTINE:
            origin = INBOX
        return await self._move(row, origin, "restore", reason, None, actor)

    # Whole messages, by Message-ID or queue id (the CLI and the console).

    async def copies_of(self, message: str) -> list[Copy]:
        key = message.strip()
        bare = key.strip("<>")
        async with self.store.session() as session:
            query = select(Copy).where(or_(Copy.queue_id == key, Copy.message_id == key,
                                           Copy.message_id == f"<{bare}>",
                                           Copy.message_id == bare))
            return list((await session.scalars(query.order_by(Copy.id))).all())

    async def retract_message(self, message: str, reason: str, *,
                              actor: str = "") -> list[PullResult]:
        """retract_message - pull every copy of one message and of its forwards.

        For the CLI, REST and the console. With trap.follow_forwards the copies
        of forwards between local mailboxes (forward_hops deep) go too.
        """
        # TODO: a report verdict moves only the reported campaign's copies; forwards linked to them stay delivered until a retro-scan or an analyst pulls them.
        copies = await self.copies_of(message)
        if not copies:
            raise MailboxError(f"no delivered copy has Message-ID or queue id {message!r}")
        if self.forward_hops:
            from mailward.trap.forwards import forwarded_hits
            from mailward.trap.lookup import CopyHit

            hits = [CopyHit(c.id, c.queue_id, c.recipient, c.state, "message")
                    for c in copies]
            async with self.store.session() as session:
                forwards = await forwarded_hits(session, hits, self.forward_hops)
            copies += [await self._load(hit.copy_id) for hit in forwards]
        return await self.move_all(copies, QUARANTINE, reason, actor=actor)

    async def restore_message(self, message: str, reason: str = "restored", *,
                              actor: str = "") -> list[PullResult]:
        copies = await self.copies_of(message)
        if not copies:
            raise MailboxError(f"no delivered copy has Message-ID or queue id {message!r}")
        return [await self.restore(copy, reason, actor=actor) for copy in copies]

    # The work.

    async def _load(self, copy: Copy | int) -> Copy:
        if isinstance(copy, Copy):
            return copy  # the adapter finds the copy wherever it is now
        copy_id = copy
        async with self.store.session() as session:
            row = await session.get(Copy, copy_id)
        if row is None:
            raise MailboxError(f"no copy with id {copy_id}")
        return row

    async def _attempt(self, row: Copy, action: str,
                       once: Callable[[int], Awaitable[PullResult]]
                       ) -> tuple[PullResult | None, str, int]:
        """_attempt - run once(attempt) in a slot, retrying mailbox errors with back-off.

        Returns the result, or None with the last error and the attempts made.
        NoAdapter and _GiveUp end the attempts at once: retrying cannot help.
        """
        error, attempt = "", 0
        async with self._slots:
            for attempt in range(1, self.attempts + 1):
                try:
                    return await once(attempt), "", attempt
                except (NoAdapter, _GiveUp) as failure:
                    return None, str(failure), attempt
                except (MailboxError, OSError) as failure:
                    error = str(failure) or type(failure).__name__
                    log.warning("%s of copy %d (%s) attempt %d/%d failed: %s", action,
                                row.id, row.recipient, attempt, self.attempts, error)
                    if attempt < self.attempts:
                        await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        return None, error, attempt

    async def _move(self, row: Copy, folder: str, action: str, reason: str,
                    incident_id: int | None, actor: str,
                    only_unread: bool = False) -> PullResult:
        ref = CopyRef(row.recipient, row.folder, row.native_id, row.message_id, row.queue_id)

        async def once(attempt: int) -> PullResult:
            try:
                adapter = self.adapter_for(row)
                current = await adapter.find(ref)
                if current is None and await self._held_item(row.id) is not None:
                    # Held in mailward's quarantine: only a restore brings it back.
                    return await self._record(row, action, reason, KEPT, HELD, HELD,
                                              incident_id, actor, None, None, attempt)
                if current is None:
                    raise CopyGone(f"copy of {row.recipient} is in none of its folders")
                was_read = await adapter.is_read(current)
                if current.folder == folder:
                    return await self._record(row, action, reason, ALREADY,
                                              current.folder, folder, incident_id, actor,
                                              was_read, current, attempt)
                if only_unread and was_read:
                    return await self._record(row, action, reason, KEPT, current.folder,
                                              current.folder, incident_id, actor,
                                              was_read, current, attempt)
                moved = await adapter.move(current, folder)
                status = {"retract": PULLED, "restore": RESTORED}.get(action, MOVED)
                return await self._record(row, action, reason, status, current.folder,
                                          folder, incident_id, actor, was_read, moved,
                                          attempt, native_before=current.native_id)
            except CopyGone as gone:
                return await self._record(row, action, reason, GONE, row.folder, folder,
                                          incident_id, actor, None, None, attempt,
                                          error=str(gone))

        result, error, attempt = await self._attempt(row, action, once)
        return result or await self._failed(row, action, reason, folder, incident_id, actor,
                                            attempt, error)

    async def _held_item(self, copy_id: int) -> QuarantineItem | None:
        async with self.store.session() as session:
            return await session.scalar(select(QuarantineItem).where(
                QuarantineItem.copy_id == copy_id, QuarantineItem.status == "held")
                .order_by(QuarantineItem.created_at.desc()).limit(1))

    def _holding_adapter(self, row: Copy) -> Any:
        adapter = self.adapter_for(row)
        if not can_hold(adapter):
            raise NoAdapter(f"the {adapter.name} adapter cannot take copies out of the "
                            "mailbox; set trap.retract_mode = folder")
        return adapter

    async def _keep(self, row: Copy, fetched: Fetched, origin: str, reason: str,
                    incident_id: int | None) -> QuarantineItem:
        """_keep - the copy's bytes on disk, then its quarantine row, both durable."""
        assert self.data_dir is not None
        item_id = new_quarantine_id()
        path = pulled_path(self.data_dir, item_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_durable, path, fetched.data)
        try:
            async with self.store.session() as session:
                category = "policy"
                if incident_id is not None:
                    incident = await session.get(Incident, incident_id)
                    category = incident.category if incident is not None else category
                item = QuarantineItem(
                    id=item_id, queue_id=row.queue_id, created_at=datetime.now(UTC),
                    category=category[:16], reason=reason[:2000], sender=row.sender,
                    recipients=[row.recipient], subject=row.subject[:2000],
                    size=len(fetched.data), status="held", copy_id=row.id,
                    incident_id=incident_id, origin_folder=origin,
                    flags=list(fetched.flags), internal_date=fetched.internal_date)
                session.add(item)
                await session.commit()
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return item

    async def _hold(self, row: Copy, reason: str, incident_id: int | None, actor: str,
                    only_unread: bool) -> PullResult:
        """_hold - take one copy out of its mailbox and keep it in the quarantine."""
        ref = CopyRef(row.recipient, row.folder, row.native_id, row.message_id, row.queue_id)

        async def once(attempt: int) -> PullResult:
            try:
                adapter = self._holding_adapter(row)
                item = await self._held_item(row.id)
                current = await adapter.find(ref)
                if current is None and item is not None:
                    return await self._record(row, "retract", reason, ALREADY, HELD,
                                              HELD, incident_id, actor, None,
                                              CopyRef(row.recipient, HELD, row.native_id,
                                                      row.message_id, row.queue_id),
                                              attempt)
                if current is None:
                    raise CopyGone(f"copy of {row.recipient} is in none of its folders")
                was_read = await adapter.is_read(current)
                if only_unread and was_read and item is None:
                    return await self._record(row, "retract", reason, KEPT,
                                              current.folder, current.folder,
                                              incident_id, actor, was_read, current,
                                              attempt)
                if item is None:
                    origin = current.folder if current.folder != QUARANTINE else INBOX
                    item = await self._keep(row, await adapter.fetch(current), origin,
                                            reason, incident_id)
                # The bytes are on disk and recorded: only now may the mailbox lose them.
                await adapter.remove(current)
                held = CopyRef(row.recipient, HELD, current.native_id, row.message_id,
                               row.queue_id)
                return await self._record(row, "retract", reason, PULLED, current.folder,
                                          HELD, incident_id, actor, was_read, held,
                                          attempt, native_before=current.native_id)
            except CopyGone as gone:
                return await self._record(row, "retract", reason, GONE, row.folder, HELD,
                                          incident_id, actor, None, None, attempt,
                                          error=str(gone))

        result, error, attempt = await self._attempt(row, "hold", once)
        return result or await self._failed(row, "retract", reason, HELD, incident_id, actor,
                                            attempt, error)

    async def _unhold(self, row: Copy, item: QuarantineItem, reason: str,
                      actor: str) -> PullResult:
        """_unhold - put a held copy back where it was, as itself, once."""
        data_dir = self.data_dir
        origin = item.origin_folder if item.origin_folder in FOLDERS else INBOX
        if origin == QUARANTINE:
            origin = INBOX

        async def once(attempt: int) -> PullResult:
            adapter = self._holding_adapter(row)
            if data_dir is None:
                raise NoAdapter("restoring a held copy needs the data directory")
            path = pulled_path(data_dir, item.id)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                raise _GiveUp(f"the held bytes of quarantine item {item.id} are missing")
            ref = CopyRef(row.recipient, origin, row.native_id, row.message_id,
                          row.queue_id)
            try:
                back = await adapter.put(ref, origin, Fetched(
                    data, tuple(item.flags or ()), item.internal_date or 0.0))
            except CopyGone as gone:
                # The mailbox itself is gone: the copy stays held, nothing is lost.
                raise _GiveUp(str(gone))
            await self._released(item.id, actor or "restore")
            path.unlink(missing_ok=True)
            return await self._record(row, "restore", reason, RESTORED, HELD, origin,
                                      None, actor, None, back, attempt)

        result, error, attempt = await self._attempt(row, "restore", once)
        return result or await self._failed(row, "restore", reason, origin, None, actor,
                                            attempt, error, from_folder=HELD)

    async def _released(self, item_id: str, by: str) -> None:
        async with self.store.session() as session:
            stored = await session.get(QuarantineItem, item_id)
            if stored is not None:
                now = datetime.now(UTC)
                stored.status, stored.released_at = "released", now
                stored.released_by = by[:320]
                await close_requests(session, item_id, f"released by {by}", by, now)
            await session.commit()

    async def _failed(self, row: Copy, action: str, reason: str, folder: str,
                      incident_id: int | None, actor: str, attempt: int, error: str,
                      from_folder: str = "") -> PullResult:
        """_failed - record a pull or restore that failed every attempt, and alert."""
        result = await self._record(row, action, reason, FAILED, from_folder or row.folder,
                                    folder, incident_id, actor, None, None, attempt,
                                    error=error)
        log.error("%s of copy %d (%s) failed after %d attempts: %s", action, row.id,
                  row.recipient, attempt, error)
        if self.alert is not None:
            try:
                await self.alert(result)
            except Exception as failure:  # an alert channel down must not hide the result
                log.error("alert for the failed %s of copy %d was not sent: %s", action,
                          row.id, failure)
        return result

    async def _record(self, row: Copy, action: str, reason: str, status: str,
                      from_folder: str, to_folder: str, incident_id: int | None, actor: str,
                      was_read: bool | None = None, now_at: CopyRef | None = None,
                      attempts: int = 0, error: str = "",
                      native_before: str = "") -> PullResult:
        """_record - one retractions row, and the copy's new place in the index."""
        now = datetime.now(UTC)
        async with self.store.session() as session:
            entry = Retraction(copy_id=row.id, queue_id=row.queue_id, recipient=row.recipient,
                               action=action, reason=reason[:2000], status=status,
                               was_read=was_read, from_folder=from_folder,
                               to_folder=to_folder,
                               native_before=(native_before or row.native_id)[:512],
                               native_after=(now_at.native_id if now_at else "")[:512],
                               attempts=attempts, error=error[:2000],
                               incident_id=incident_id, actor=actor[:200], started_at=now,
                               finished_at=datetime.now(UTC))
            session.add(entry)
            stored = await session.get(Copy, row.id)
            if stored is not None:
                if now_at is not None:
                    stored.folder = now_at.folder
                    stored.native_id = now_at.native_id[:512]
                    stored.state = ("retracted" if now_at.folder in (QUARANTINE, HELD)
                                    else "delivered")
                elif status == GONE:
                    stored.state = "gone"
            if action == "restore" and status == RESTORED:
                await self._restored_on_incidents(session, row, actor, reason, now)
            await session.commit()
        log.info("%s copy %d of %s: %s (%s -> %s)%s", action, row.id, row.recipient, status,
                 from_folder, to_folder, f": {error}" if error else "")
        return PullResult(row.id, row.recipient, row.queue_id, status, was_read, from_folder,
                          to_folder, attempts, error, entry.id)


    async def _restored_on_incidents(self, session, row: Copy, actor: str, reason: str,
                                     now: datetime) -> None:
        """_restored_on_incidents - every incident of the copy shows who restored it."""
        who = (actor or "restore")[:200]
        links = (await session.scalars(select(IncidentCopy).where(
            IncidentCopy.copy_id == row.id))).all()
        for link in links:
            link.action, link.restored_at, link.restored_by = RESTORED, now, who
            incident = await session.get(Incident, link.incident_id)
            if incident is not None:
                incident.updated_at = now
                incident.history = [*incident.history, {
                    "at": now.isoformat(), "event": f"restored copy of {row.recipient}",
                    "actor": who, "note": reason[:500]}]


def adapters_from_settings(settings: "Settings") -> dict[str, Mailbox]:
    """adapters_from_settings - the adapter for each place copies are indexed in."""
    from mailward.mailbox.maildir import MaildirStore

    adapters: dict[str, Mailbox] = {"maildir": MaildirStore(settings.data_dir / "mailboxes")}
    remote = settings.trap.remote_mailbox
    if remote == "imap":
        from mailward.mailbox.imap import ImapConfig, ImapMailbox

        imap = settings.imap
        password = imap.admin_password
        if imap.admin_password_file:
            password = Path(imap.admin_password_file).read_text(encoding="utf-8").strip()
        adapters["relay"] = adapters["imap"] = ImapMailbox(ImapConfig(
            host=imap.host, port=imap.port, security=imap.security, auth=imap.auth,
            admin_user=imap.admin_user, admin_password=password,
            master_separator=imap.master_separator, passwords_file=imap.passwords_file,
            timeout=imap.timeout, use_move=imap.use_move, verify_tls=imap.verify_tls))
    elif remote == "graph":
        from mailward.mailbox.graph import GraphMailbox

        adapters["relay"] = adapters["graph"] = GraphMailbox.from_settings(settings.graph)
    return adapters
