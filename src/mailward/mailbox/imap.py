"""Delivered copies on an IMAP server, reached with an administrator account.

The adapter logs in to each recipient's mailbox either as a master user
(Dovecot's ``recipient*admin`` with the administrator's password) or with
the recipient's own password from a file the operator keeps. A copy is found
by the ``X-Mailward-Queue-Id`` header the gateway put on it (or, failing
that, its Message-ID) and its native id is ``UIDVALIDITY:UID`` in the folder
it was found in.

A move is MOVE (RFC 6851) where the server announces it, else COPY, STORE
\\Deleted and UID EXPUNGE (RFC 4315), which touches no other message the user
marked deleted. In hold mode a copy is fetched whole (BODY.PEEK[], so the
fetch does not mark it read), removed by UID EXPUNGE from every folder it is
in, and restored by APPEND with its flags and internal date (RFC 3501
s6.3.11), after a search shows it is not already back. Every step can be
repeated: a move asked again after a
dropped connection first looks in every folder, and a copy found both in the
target and the source (COPY done, EXPUNGE lost) loses the source only, so a
copy is never pulled twice nor lost. A connection that drops is opened again
once per operation.

SECURITY: passwords are read from the configuration or a file and never
logged; recipient addresses are sent as IMAP strings (imapclient quotes
them) and a folder name outside the known ones is refused.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailward.mailbox.base import FOLDERS, CopyGone, CopyRef, Fetched, MailboxError

log = logging.getLogger("mailward.mailbox")

QUEUE_HEADER = "X-Mailward-Queue-Id"
SEEN = b"\\Seen"
DELETED = b"\\Deleted"
T = TypeVar("T")

# Errors after which the connection is useless and is opened again.
_DROPPED = (OSError, socket.timeout, imaplib.IMAP4.abort, EOFError, ssl.SSLError)


@dataclass
class ImapConfig:
    """How to reach the IMAP server and log in to the mailboxes on it."""

    host: str = "127.0.0.1"
    port: int = 143
    security: Literal["none", "starttls", "tls"] = "starttls"
    auth: Literal["master", "user"] = "master"
    admin_user: str = ""
    admin_password: str = ""
    master_separator: str = "*"
    passwords_file: str = ""
    timeout: float = 30.0
    use_move: bool = True
    verify_tls: bool = True
    folders: dict[str, str] = field(default_factory=dict)

    def folder(self, name: str) -> str:
        if name not in FOLDERS:
            raise MailboxError(f"unknown folder {name!r} (one of {', '.join(FOLDERS)})")
        return self.folders.get(name, name)


class ImapMailbox:
    """Finds, moves and reads the flags of copies in IMAP mailboxes."""

    name = "imap"

    def __init__(self, config: ImapConfig,
                 fault: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._clients: dict[str, IMAPClient] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._passwords: dict[str, str] | None = None
        # Called between the steps of a move with the step's name; a test
        # uses it to drop the connection at the worst moment.
        self._fault = fault or (lambda step: None)

    # Connections, one per recipient, opened again when they drop.

    def _password_of(self, recipient: str) -> str:
        if self._passwords is None:
            path = Path(self.config.passwords_file)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise MailboxError(f"imap.passwords_file {path}: {error}") from None
            if not isinstance(data, dict):
                raise MailboxError(f"imap.passwords_file {path}: expected a JSON object "
                                   "of address to password")
            self._passwords = {str(k).lower(): str(v) for k, v in data.items()}
        password = self._passwords.get(recipient.lower())
        if password is None:
            raise CopyGone(f"no IMAP password for {recipient} in imap.passwords_file")
        return password

    def _connect(self, recipient: str) -> IMAPClient:
        config = self.config
        context = ssl.create_default_context()
        if not config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client = IMAPClient(config.host, port=config.port, ssl=config.security == "tls",
                            ssl_context=context, timeout=config.timeout)
        try:
            if config.security == "starttls":
                client.starttls(context)
            if config.auth == "master":
                client.login(f"{recipient}{config.master_separator}{config.admin_user}",
                             config.admin_password)
            else:
                client.login(recipient, self._password_of(recipient))
        except LoginError:
            _close(client)
            # Dovecot answers a master login to a missing user as a failed login.
            raise CopyGone(f"cannot log in to the mailbox of {recipient} "
                           "(the mailbox is gone or the credentials are wrong)") from None
        except BaseException:
            _close(client)
            raise
        return client

    def _run(self, recipient: str, operation: Callable[[IMAPClient], T]) -> T:
        """_run - operation on the recipient's connection, reconnecting once."""
        with self._guard:
            lock = self._locks.setdefault(recipient, threading.Lock())
        with lock:
            for attempt in (1, 2):
                client = self._clients.get(recipient)
                try:
                    if client is None:
                        client = self._clients[recipient] = self._connect(recipient)
                    return operation(client)
                except _DROPPED as error:
                    self._drop(recipient)
                    if attempt == 2:
                        raise MailboxError(f"IMAP connection for {recipient} failed: "
                                           f"{error or type(error).__name__}") from None
                    log.info("IMAP connection for %s dropped (%s); reconnecting", recipient,
                             error or type(error).__name__)
                except IMAPClientError as error:
                    self._drop(recipient)
                    raise MailboxError(f"IMAP error for {recipient}: {error}") from None
        raise AssertionError("unreachable")

    def _drop(self, recipient: str) -> None:
        client = self._clients.pop(recipient, None)
        if client is not None:
            _close(client)

    def close(self) -> None:
        for recipient in list(self._clients):
            self._drop(recipient)

    # Finding a copy.

    def _criteria(self, ref: CopyRef) -> list[Any]:
        if ref.queue_id:
            return ["HEADER", QUEUE_HEADER, ref.queue_id]
        if ref.message_id:
            return ["HEADER", "Message-ID", ref.message_id]
        raise MailboxError(f"copy of {ref.recipient} has neither a queue id nor a Message-ID")

    def _search(self, client: IMAPClient, folder: str, ref: CopyRef,
                readonly: bool = True) -> tuple[int, list[int]]:
        """_search - (uidvalidity, uids) of the copy in one folder."""
        try:
            info = client.select_folder(self.config.folder(folder), readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except IMAPClientError:
            return 0, []  # the folder does not exist (yet): the copy is not there
        validity = int(info.get(b"UIDVALIDITY", 0))
        return validity, sorted(client.search(self._criteria(ref)))

    def _everywhere(self, client: IMAPClient, ref: CopyRef) -> dict[str, tuple[int, list[int]]]:
        order = [ref.folder] if ref.folder in FOLDERS else []
        order += [f for f in FOLDERS if f not in order]
        places = {}
        for folder in order:
            validity, uids = self._search(client, folder, ref)
            if uids:
                places[folder] = (validity, uids)
        return places

    def _find(self, client: IMAPClient, ref: CopyRef) -> CopyRef | None:
        places = self._everywhere(client, ref)
        if not places:
            return None
        folder, (validity, uids) = next(iter(places.items()))
        return CopyRef(ref.recipient, folder, f"{validity}:{uids[0]}", ref.message_id,
                       ref.queue_id)

    async def find(self, ref: CopyRef) -> CopyRef | None:
        return await asyncio.to_thread(self._run, ref.recipient,
                                       lambda client: self._find(client, ref))

    # Moving it.

    def _ensure_folder(self, client: IMAPClient, folder: str) -> None:
        name = self.config.folder(folder)
        if not client.folder_exists(name):
            try:
                client.create_folder(name)
            except IMAPClientError:
                if not client.folder_exists(name):
                    raise

    def _expunge(self, client: IMAPClient, uids: list[int]) -> None:
        client.add_flags(uids, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            # TODO: without UIDPLUS a plain EXPUNGE also removes the other messages the user marked \Deleted in this folder; servers this old are rare but it is data loss for them.
            client.expunge()

    def _move(self, client: IMAPClient, ref: CopyRef, folder: str) -> CopyRef:
        target = self.config.folder(folder)
        places = self._everywhere(client, ref)
        if not places:
            raise CopyGone(f"copy {ref.queue_id or ref.message_id} of {ref.recipient} "
                           "is in none of its folders")
        if folder not in places:
            self._ensure_folder(client, folder)
            source, (_, uids) = next(iter(places.items()))
            client.select_folder(self.config.folder(source))
            self._fault("selected")
            if self.config.use_move and client.has_capability("MOVE"):
                client.move(uids, target)
            else:
                client.copy(uids, target)
                self._fault("copied")
                self._expunge(client, uids)
            del places[source]
        # Whatever is left outside the target is the remains of an interrupted move.
        for other, (_, uids) in places.items():
            if other != folder:
                client.select_folder(self.config.folder(other))
                self._expunge(client, uids)
                log.info("removed a left-over copy of %s in %s of %s",
                         ref.queue_id or ref.message_id, other, ref.recipient)
        validity, uids = self._search(client, folder, ref)
        if not uids:
            raise MailboxError(f"copy of {ref.recipient} not found in {folder} after the move")
        if len(uids) > 1:
            # A COPY repeated after a drop left two in the target: keep the first.
            client.select_folder(target)
            self._expunge(client, uids[1:])
        return CopyRef(ref.recipient, folder, f"{validity}:{uids[0]}", ref.message_id,
                       ref.queue_id)

    async def move(self, ref: CopyRef, folder: str) -> CopyRef:
        self.config.folder(folder)
        return await asyncio.to_thread(self._run, ref.recipient,
                                       lambda client: self._move(client, ref, folder))

    # Its flags.

    def _is_read(self, client: IMAPClient, ref: CopyRef) -> bool:
        places = self._everywhere(client, ref)
        if not places:
            raise CopyGone(f"copy {ref.queue_id or ref.message_id} of {ref.recipient} is gone")
        folder, (_, uids) = next(iter(places.items()))
        client.select_folder(self.config.folder(folder), readonly=True)
        flags = client.get_flags(uids[:1])
        return SEEN in flags.get(uids[0], ())

    async def is_read(self, ref: CopyRef) -> bool:
        return await asyncio.to_thread(self._run, ref.recipient,
                                       lambda client: self._is_read(client, ref))

    # Taking it out and putting it back (trap.retract_mode = "hold").

    def _fetch(self, client: IMAPClient, ref: CopyRef) -> Fetched:
        places = self._everywhere(client, ref)
        if not places:
            raise CopyGone(f"copy {ref.queue_id or ref.message_id} of {ref.recipient} is gone")
        folder, (_, uids) = next(iter(places.items()))
        client.select_folder(self.config.folder(folder), readonly=True)
        answer = client.fetch(uids[:1], [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])
        item = answer.get(uids[0])
        if not item or b"BODY[]" not in item:
            raise MailboxError(f"IMAP FETCH of the copy of {ref.recipient} gave no body")
        flags = tuple(_text(flag) for flag in item.get(b"FLAGS", ())
                      if flag not in (b"\\Recent", DELETED))
        when = item.get(b"INTERNALDATE")
        return Fetched(bytes(item[b"BODY[]"]), flags,
                       when.timestamp() if isinstance(when, datetime) else 0.0)

    async def fetch(self, ref: CopyRef) -> Fetched:
        return await asyncio.to_thread(self._run, ref.recipient,
                                       lambda client: self._fetch(client, ref))

    def _remove(self, client: IMAPClient, ref: CopyRef) -> None:
        for folder, (_, uids) in self._everywhere(client, ref).items():
            client.select_folder(self.config.folder(folder))
            self._fault("removing")
            self._expunge(client, uids)

    async def remove(self, ref: CopyRef) -> None:
        await asyncio.to_thread(self._run, ref.recipient,
                                lambda client: self._remove(client, ref))

    def _put(self, client: IMAPClient, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        found = self._find(client, ref)
        if found is not None:
            return found  # put back already (an answer lost after the APPEND)
        self._ensure_folder(client, folder)
        when = datetime.fromtimestamp(copy.internal_date, UTC) if copy.internal_date \
            else None
        client.append(self.config.folder(folder), copy.data, flags=list(copy.flags),
                      msg_time=when)
        self._fault("appended")
        validity, uids = self._search(client, folder, ref)
        if not uids:
            raise MailboxError(f"copy of {ref.recipient} not found in {folder} after APPEND")
        return CopyRef(ref.recipient, folder, f"{validity}:{uids[0]}", ref.message_id,
                       ref.queue_id)

    async def put(self, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        self.config.folder(folder)
        return await asyncio.to_thread(self._run, ref.recipient,
                                       lambda client: self._put(client, ref, folder, copy))

    def drop_connection(self, recipient: str) -> None:
        """drop_connection - shut the recipient's socket as a failing network would."""
        client = self._clients.get(recipient)
        if client is not None:
            try:
                client._imap.sock.shutdown(socket.SHUT_RDWR)  # noqa: SLF001
            except OSError:
                pass


def _text(flag: bytes | str) -> str:
    return flag.decode("ascii", "replace") if isinstance(flag, bytes) else str(flag)


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone
        try:
            client.shutdown()
        except Exception:
            pass
