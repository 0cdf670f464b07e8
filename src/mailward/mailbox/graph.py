"""Delivered copies in Exchange Online, reached through Microsoft Graph.

The adapter uses msgraph-sdk with application credentials (client id and
secret of an app granted Mail.ReadWrite): a token comes from the OAuth 2.0
client-credentials grant (RFC 6749 s4.4) at ``{authority}/{tenant}/oauth2/
v2.0/token`` and is kept until shortly before it expires. A copy is found
by its Internet Message-ID in the recipient's mailbox; its native id is the
Graph message id, which changes on every move, so the id returned by the
move is recorded. Quarantine is a folder of that name, created when
missing; Junk is the well-known ``junkemail``.

The SDK's retry middleware answers throttling (429, 503 with Retry-After);
a recipient Graph does not know is ``CopyGone``.

In hold mode (``trap.retract_mode = "hold"``) the copy's MIME content
(``/messages/{id}/$value``) is kept in mailward's quarantine and the copy is
moved into ``mailward-held``, a folder of the mailbox created with
PR_ATTR_HIDDEN set, which Outlook, OWA and mobile clients do not show. It is
not deleted: Graph can only re-create a message from MIME as a draft, so a
restore is a move back from the hidden folder, which keeps the message
itself (its bytes, read state, flags and dates). A held copy is found by no
``find``; an administrator can still see it with MFCMAPI or eDiscovery.

SECURITY: the client secret is read from the configuration or a file and
sent only to the token endpoint; OData filter values are quoted with
single quotes doubled, so a Message-ID cannot widen the filter.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from mailward.mailbox.base import (FOLDERS, INBOX, JUNK, CopyGone, CopyRef, Fetched,
                                   MailboxError)

if TYPE_CHECKING:
    from mailward.config import GraphSettings

WELL_KNOWN = {INBOX: "inbox", JUNK: "junkemail"}
# The hidden folder held copies wait in, and the MAPI property that hides it.
HELD_FOLDER = "mailward-held"
PR_ATTR_HIDDEN = "Boolean 0x10F4"


class ClientCredentials:
    """An OAuth 2.0 client-credentials token for Graph, refreshed before it expires."""

    def __init__(self, authority: str, tenant: str, client_id: str, secret: str,
                 scope: str, timeout: float) -> None:
        self.url = f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        self.form = {"grant_type": "client_credentials", "client_id": client_id,
                     "client_secret": secret, "scope": scope}
        self.timeout = timeout
        self._token = ""
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self._token and time.monotonic() < self._until - 60:
                return self._token
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                try:
                    answer = await client.post(self.url, data=self.form)
                except httpx.HTTPError as error:
                    raise MailboxError(f"Graph token endpoint: {error}") from None
            if answer.status_code != 200:
                raise MailboxError(f"Graph token endpoint answered {answer.status_code}: "
                                   f"{answer.text[:200]}")
            data = answer.json()
            self._token = str(data.get("access_token", ""))
            self._until = time.monotonic() + float(data.get("expires_in", 3600))
            if not self._token:
                raise MailboxError("Graph token endpoint gave no access_token")
            return self._token


def _odata_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class GraphMailbox:
    """Finds, moves and reads copies in Exchange Online mailboxes."""

    name = "graph"

    def __init__(self, credentials: ClientCredentials, endpoint: str, timeout: float) -> None:
        from kiota_abstractions.authentication import (AccessTokenProvider,
                                                       AllowedHostsValidator,
                                                       BaseBearerTokenAuthenticationProvider)
        from msgraph import GraphServiceClient
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph_core import GraphClientFactory

        host = httpx.URL(endpoint).host

        class Tokens(AccessTokenProvider):
            async def get_authorization_token(self, uri: str,
                                              additional_authentication_context=None) -> str:
                return await credentials.token()

            def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
                return AllowedHostsValidator([host])

        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=timeout))
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Tokens()), http)
        adapter.base_url = endpoint.rstrip("/")
        self.client = GraphServiceClient(request_adapter=adapter)
        self._folders: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: "GraphSettings") -> "GraphMailbox":
        secret = settings.client_secret
        if settings.client_secret_file:
            secret = Path(settings.client_secret_file).read_text(encoding="utf-8").strip()
        if not (settings.tenant_id and settings.client_id and secret):
            raise MailboxError("graph.tenant_id, graph.client_id and graph.client_secret "
                               "(or client_secret_file) must be set for trap.remote_mailbox "
                               "= graph")
        scope = f"{httpx.URL(settings.endpoint).scheme}://{httpx.URL(settings.endpoint).host}" \
                "/.default"
        credentials = ClientCredentials(settings.authority, settings.tenant_id,
                                        settings.client_id, secret, scope, settings.timeout)
        return cls(credentials, settings.endpoint, settings.timeout)

    # Errors of the SDK into the adapter contract.

    async def _call(self, recipient: str, coroutine) -> Any:
        from kiota_abstractions.api_error import APIError

        try:
            return await coroutine
        except APIError as error:
            status = getattr(error, "response_status_code", 0) or 0
            if status == 404:
                raise CopyGone(f"Graph: the mailbox of {recipient} or the copy is gone") \
                    from None
            raise MailboxError(f"Graph answered {status} for {recipient}: "
                               f"{getattr(error, 'message', '') or error}") from None
        except httpx.HTTPError as error:
            raise MailboxError(f"Graph request for {recipient} failed: {error}") from None

    # Folders.

    async def folder_id(self, recipient: str, folder: str, create: bool = False) -> str:
        if folder not in FOLDERS:
            raise MailboxError(f"unknown folder {folder!r} (one of {', '.join(FOLDERS)})")
        cached = self._folders.get((recipient, folder))
        if cached:
            return cached
        user = self.client.users.by_user_id(recipient)
        if folder in WELL_KNOWN:
            found = await self._call(recipient, user.mail_folders.by_mail_folder_id(
                WELL_KNOWN[folder]).get())
            identifier = found.id if found else ""
        else:
            identifier = await self._named_folder(recipient, folder, create)
        if identifier:
            self._folders[(recipient, folder)] = identifier
        return identifier

    async def _named_folder(self, recipient: str, name: str, create: bool,
                            hidden: bool = False) -> str:
        from msgraph.generated.models.mail_folder import MailFolder
        from msgraph.generated.models.single_value_legacy_extended_property import (
            SingleValueLegacyExtendedProperty)
        from msgraph.generated.users.item.mail_folders.mail_folders_request_builder import (
            MailFoldersRequestBuilder)

        user = self.client.users.by_user_id(recipient)
        query = MailFoldersRequestBuilder.MailFoldersRequestBuilderGetQueryParameters(
            filter=f"displayName eq {_odata_quote(name)}", select=["id", "displayName"],
            include_hidden_folders="true" if hidden else None)
        config = MailFoldersRequestBuilder.MailFoldersRequestBuilderGetRequestConfiguration(
            query_parameters=query)
        page = await self._call(recipient, user.mail_folders.get(request_configuration=config))
        for item in (page.value or []) if page else []:
            if item.display_name == name:
                return item.id
        if not create:
            return ""
        folder = MailFolder(display_name=name)
        if hidden:
            folder.single_value_extended_properties = [
                SingleValueLegacyExtendedProperty(id=PR_ATTR_HIDDEN, value="true")]
        made = await self._call(recipient, user.mail_folders.post(folder))
        return made.id if made else ""

    async def held_folder_id(self, recipient: str, create: bool = False) -> str:
        """held_folder_id - the hidden folder held copies wait in ("" if none yet)."""
        cached = self._folders.get((recipient, HELD_FOLDER))
        if cached:
            return cached
        identifier = await self._named_folder(recipient, HELD_FOLDER, create, hidden=True)
        if identifier:
            self._folders[(recipient, HELD_FOLDER)] = identifier
        return identifier

    async def _folder_name(self, recipient: str, folder_id: str) -> str:
        for name in FOLDERS:
            if await self.folder_id(recipient, name) == folder_id:
                return name
        return ""

    # The contract.

    async def _message(self, ref: CopyRef, in_folder: str = ""):
        """_message - the copy in the mailbox (or in one folder of it), or None."""
        from msgraph.generated.users.item.messages.messages_request_builder import (
            MessagesRequestBuilder)

        if not ref.message_id:
            raise MailboxError(f"copy of {ref.recipient} has no Message-ID to find it by")
        user = self.client.users.by_user_id(ref.recipient)
        query = MessagesRequestBuilder.MessagesRequestBuilderGetQueryParameters(
            filter=f"internetMessageId eq {_odata_quote(ref.message_id)}",
            select=["id", "isRead", "parentFolderId", "internetMessageId",
                    "receivedDateTime"], top=10)
        config = MessagesRequestBuilder.MessagesRequestBuilderGetRequestConfiguration(
            query_parameters=query)
        where = user.mail_folders.by_mail_folder_id(in_folder).messages if in_folder \
            else user.messages
        page = await self._call(ref.recipient, where.get(request_configuration=config))
        items = (page.value or []) if page else []
        if ref.native_id:
            items.sort(key=lambda m: m.id != ref.native_id)
        return items[0] if items else None

    async def find(self, ref: CopyRef) -> CopyRef | None:
        message = await self._message(ref)
        if message is None:
            return None
        folder = await self._folder_name(ref.recipient, message.parent_folder_id or "")
        if not folder and message.parent_folder_id and \
                message.parent_folder_id == await self.held_folder_id(ref.recipient):
            return None  # held by mailward: in none of the user's folders
        return CopyRef(ref.recipient, folder or ref.folder, message.id, ref.message_id,
                       ref.queue_id)

    async def move(self, ref: CopyRef, folder: str) -> CopyRef:
        from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
            MovePostRequestBody)

        message = await self._message(ref)
        if message is None:
            raise CopyGone(f"copy {ref.message_id} of {ref.recipient} is gone")
        target = await self.folder_id(ref.recipient, folder, create=True)
        if not target:
            raise MailboxError(f"Graph: no folder {folder} in the mailbox of {ref.recipient}")
        if message.parent_folder_id == target:
            return CopyRef(ref.recipient, folder, message.id, ref.message_id, ref.queue_id)
        user = self.client.users.by_user_id(ref.recipient)
        moved = await self._call(ref.recipient, user.messages.by_message_id(message.id)
                                 .move.post(MovePostRequestBody(destination_id=target)))
        return CopyRef(ref.recipient, folder, moved.id if moved else message.id,
                       ref.message_id, ref.queue_id)

    async def is_read(self, ref: CopyRef) -> bool:
        message = await self._message(ref)
        if message is None:
            raise CopyGone(f"copy {ref.message_id} of {ref.recipient} is gone")
        return bool(message.is_read)

    # Hold mode: the MIME content into mailward's quarantine, the copy into
    # the hidden folder, and back by a move.

    async def fetch(self, ref: CopyRef) -> Fetched:
        message = await self._message(ref)
        if message is None:
            raise CopyGone(f"copy {ref.message_id} of {ref.recipient} is gone")
        user = self.client.users.by_user_id(ref.recipient)
        data = await self._call(ref.recipient,
                                user.messages.by_message_id(message.id).content.get())
        if not data:
            raise MailboxError(f"Graph gave no MIME content for the copy of {ref.recipient}")
        when = message.received_date_time
        return Fetched(bytes(data), ("\\Seen",) if message.is_read else (),
                       when.timestamp() if when else 0.0)

    async def remove(self, ref: CopyRef) -> None:
        message = await self._message(ref)
        if message is None:
            return
        held = await self.held_folder_id(ref.recipient, create=True)
        if not held:
            raise MailboxError(f"Graph: could not make the hidden folder of {ref.recipient}")
        if message.parent_folder_id != held:
            await self._move_to(ref.recipient, message.id, held)

    async def put(self, ref: CopyRef, folder: str, copy: Fetched) -> CopyRef:
        target = await self.folder_id(ref.recipient, folder, create=True)
        if not target:
            raise MailboxError(f"Graph: no folder {folder} in the mailbox of {ref.recipient}")
        held = await self.held_folder_id(ref.recipient)
        message = await self._message(ref, in_folder=held) if held else None
        if message is None:
            back = await self._message(ref)
            if back is not None and back.parent_folder_id == target:
                return CopyRef(ref.recipient, folder, back.id, ref.message_id, ref.queue_id)
            # TODO: a held copy purged from the hidden folder could be re-created from the kept MIME bytes, but Graph makes such a message a draft; until then the restore fails and the copy stays in mailward's quarantine.
            raise CopyGone(f"the held copy of {ref.recipient} is no longer in the hidden "
                           f"folder {HELD_FOLDER}")
        moved = await self._move_to(ref.recipient, message.id, target)
        return CopyRef(ref.recipient, folder, moved or message.id, ref.message_id,
                       ref.queue_id)

    async def _move_to(self, recipient: str, message_id: str, folder_id: str) -> str:
        from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
            MovePostRequestBody)

        user = self.client.users.by_user_id(recipient)
        moved = await self._call(recipient, user.messages.by_message_id(message_id)
                                 .move.post(MovePostRequestBody(destination_id=folder_id)))
        return moved.id if moved else ""
