"""A local HTTP server speaking the part of the MISP REST API that PyMISP's
start-up and ``search(controller="attributes")`` use.

It answers ``servers/getPyMISPVersion.json``, ``servers/getVersion`` and
``users/view/me`` (PyMISP checks these when it connects) and
``POST /attributes/restSearch`` with the attributes of its published events,
filtered by ``to_ids`` and ``publish_timestamp`` (epoch seconds, or a
relative ``14d``/``12h``/``30m``) as MISP does. Every request must carry the
automation key in ``Authorization``; each search body is kept for the test.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.dnsserver import free_port

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def _since(value: Any, now: float) -> float:
    """_since - the publish_timestamp filter as epoch seconds."""
    text = str(value or "0")
    relative = re.fullmatch(r"(\d+)([dhms])", text)
    if relative:
        return now - int(relative.group(1)) * _UNITS[relative.group(2)]
    return float(text)


class MispServer:
    """Published events (publish time and attributes) behind an automation key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.port = free_port()
        self.events: list[tuple[float, list[dict[str, Any]]]] = []
        self.searches: list[dict[str, Any]] = []
        self.refuse_search = False
        app = FastAPI()
        server = self

        @app.middleware("http")
        async def auth(request: Request, call_next):
            if request.headers.get("authorization") != server.key:
                return JSONResponse({"name": "Authentication failed.", "message":
                                     "Authentication failed.", "url": request.url.path},
                                    status_code=403)
            return await call_next(request)

        @app.get("/servers/getPyMISPVersion.json")
        async def pymisp_version():
            return {"version": "2.5.0"}

        @app.get("/servers/getVersion")
        async def version():
            return {"version": "2.5.0", "perm_sync": False, "perm_sighting": False}

        @app.get("/users/view/me")
        async def me():
            return {"User": {"id": "1", "email": "feed@example.org", "org_id": "1",
                             "role_id": "3"},
                    "Role": {"id": "3", "name": "User", "perm_auth": True},
                    "UserSetting": {}}

        @app.post("/attributes/restSearch")
        async def search(request: Request):
            body = await request.json()
            server.searches.append(body)
            if server.refuse_search:
                return JSONResponse({"name": "Not allowed", "message": "Not allowed",
                                     "url": "/attributes/restSearch"}, status_code=405)
            since = _since(body.get("publish_timestamp"), time.time())
            wanted = body.get("to_ids")
            found = []
            for published, attributes in server.events:
                if published < since:
                    continue
                for attribute in attributes:
                    if wanted in (1, True, "1") and not attribute.get("to_ids"):
                        continue
                    found.append(attribute)
            return {"response": {"Attribute": found}}

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "MispServer":
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
