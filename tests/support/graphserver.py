"""A local server speaking the Microsoft Graph message endpoints the adapter uses.

It holds mailboxes in memory: well-known folders inbox and junkemail,
folders created by POST, messages with ids that change on every move (as
Exchange's do), the OAuth 2.0 client-credentials token endpoint, Bearer
checks, 404 for an unknown user, and one 429 with Retry-After on demand.
A message's MIME content is served at ``$value``; a folder created with
PR_ATTR_HIDDEN is left out of folder listings unless
``includeHiddenFolders=true`` is asked, as Exchange does.
"""

from __future__ import annotations

import itertools
import re
import threading
import time

import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse

from tests.support.dnsserver import free_port

TOKEN = "graph-test-token"
SECRET = "graph-test-secret"


class GraphServer:
    def __init__(self, users: list[str]) -> None:
        self.port = free_port()
        self.ids = itertools.count(1)
        self.folders: dict[str, dict[str, str]] = {}
        self.hidden: set[str] = set()
        self.messages: dict[str, dict[str, dict]] = {}
        self.requests: list[str] = []
        self.mime: dict[str, bytes] = {}
        self.throttle_next_move = False
        for user in users:
            self.folders[user] = {"inbox": f"F-inbox-{user}", "junkemail": f"F-junk-{user}"}
            self.messages[user] = {}
        self.app = self._app()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))

    def add(self, user: str, message_id: str, read: bool = False, folder: str = "inbox",
            mime: bytes = b"") -> str:
        identifier = f"M{next(self.ids)}"
        self.messages[user][identifier] = {"id": identifier, "internetMessageId": message_id,
                                           "isRead": read,
                                           "parentFolderId": self.folders[user][folder],
                                           "receivedDateTime": "2026-12-01T09:30:00Z"}
        self.mime[identifier] = mime or f"Message-ID: {message_id}\r\n\r\nbody\r\n".encode()
        return identifier

    def folder_of(self, user: str, message_id: str) -> str:
        for item in self.messages[user].values():
            if item["internetMessageId"] == message_id:
                names = {v: k for k, v in self.folders[user].items()}
                return names[item["parentFolderId"]]
        return ""

    def _app(self) -> FastAPI:
        app = FastAPI()
        graph = self

        def error(status: int, code: str, text: str) -> JSONResponse:
            return JSONResponse({"error": {"code": code, "message": text}}, status_code=status)

        @app.middleware("http")
        async def auth(request: Request, call_next):
            graph.requests.append(f"{request.method} {request.url.path}")
            if request.url.path.startswith("/v1.0/") and \
                    request.headers.get("authorization") != f"Bearer {TOKEN}":
                return error(401, "InvalidAuthenticationToken", "bad token")
            return await call_next(request)

        @app.post("/{tenant}/oauth2/v2.0/token")
        async def token(tenant: str, client_secret: str = Form(...),
                        grant_type: str = Form(...)):
            if client_secret != SECRET or grant_type != "client_credentials":
                return error(401, "invalid_client", "bad secret")
            return {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}

        def mailbox(user: str):
            if user not in graph.folders:
                return None
            return graph.folders[user]

        @app.get("/v1.0/users/{user}/mailFolders/{name}")
        async def well_known(user: str, name: str):
            folders = mailbox(user)
            if folders is None:
                return error(404, "ErrorInvalidUser", f"no mailbox {user}")
            if name not in folders:
                return error(404, "ErrorItemNotFound", "no folder")
            return {"id": folders[name], "displayName": name}

        @app.get("/v1.0/users/{user}/mailFolders")
        async def list_folders(user: str, request: Request):
            folders = mailbox(user)
            if folders is None:
                return error(404, "ErrorInvalidUser", f"no mailbox {user}")
            wanted = re.fullmatch(r"displayName eq '(.*)'",
                                  request.query_params.get("$filter", ""))
            name = wanted.group(1).replace("''", "'") if wanted else None
            hidden = request.query_params.get("includeHiddenFolders", "") == "true"
            return {"value": [{"id": v, "displayName": k} for k, v in folders.items()
                              if (name is None or k == name)
                              and (hidden or v not in graph.hidden)]}

        @app.post("/v1.0/users/{user}/mailFolders")
        async def create_folder(user: str, request: Request):
            folders = mailbox(user)
            if folders is None:
                return error(404, "ErrorInvalidUser", f"no mailbox {user}")
            body = {k.lower(): v for k, v in (await request.json()).items()}
            name = body["displayname"]
            if name in folders:
                return error(409, "ErrorFolderExists", "a folder of that name exists")
            folders[name] = f"F-{name}-{user}"
            for prop in body.get("singlevalueextendedproperties") or []:
                if prop.get("id") == "Boolean 0x10F4" and prop.get("value") == "true":
                    graph.hidden.add(folders[name])
            return JSONResponse({"id": folders[name], "displayName": name}, status_code=201)

        def messages(user: str, request: Request, folder: str = ""):
            if mailbox(user) is None:
                return error(404, "ErrorInvalidUser", f"no mailbox {user}")
            wanted = re.fullmatch(r"internetMessageId eq '(.*)'",
                                  request.query_params.get("$filter", ""))
            if not wanted:
                return error(400, "BadRequest", "unsupported filter")
            value = wanted.group(1).replace("''", "'")
            return {"value": [m for m in graph.messages[user].values()
                              if m["internetMessageId"] == value
                              and (not folder or m["parentFolderId"] == folder)]}

        @app.get("/v1.0/users/{user}/messages")
        async def list_messages(user: str, request: Request):
            return messages(user, request)

        @app.get("/v1.0/users/{user}/mailFolders/{folder}/messages")
        async def folder_messages(user: str, folder: str, request: Request):
            return messages(user, request, folder)

        @app.get("/v1.0/users/{user}/messages/{identifier}/$value")
        async def content(user: str, identifier: str):
            if mailbox(user) is None or identifier not in graph.messages[user]:
                return error(404, "ErrorItemNotFound", "no message")
            from fastapi.responses import Response

            return Response(graph.mime[identifier], media_type="text/plain")

        @app.post("/v1.0/users/{user}/messages/{identifier}/move")
        async def move(user: str, identifier: str, request: Request):
            if mailbox(user) is None:
                return error(404, "ErrorInvalidUser", f"no mailbox {user}")
            if graph.throttle_next_move:
                graph.throttle_next_move = False
                return JSONResponse({"error": {"code": "TooManyRequests", "message": "slow"}},
                                    status_code=429, headers={"Retry-After": "1"})
            item = graph.messages[user].pop(identifier, None)
            if item is None:
                return error(404, "ErrorItemNotFound", "no message")
            # Graph reads property names case-insensitively; the SDK sends DestinationId.
            body = {k.lower(): v for k, v in (await request.json()).items()}
            destination = body.get("destinationid", "")
            if destination not in graph.folders[user].values():
                return error(400, "ErrorInvalidIdMalformed", "no folder")
            moved = {**item, "id": f"M{next(graph.ids)}", "parentFolderId": destination}
            graph.messages[user][moved["id"]] = moved
            graph.mime[moved["id"]] = graph.mime.pop(identifier, b"")
            return JSONResponse(moved, status_code=201)

        return app

    def start(self) -> "GraphServer":
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    @property
    def authority(self) -> str:
        return f"http://127.0.0.1:{self.port}"
