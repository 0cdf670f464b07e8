"""The HTTP service: REST API (FastAPI) for automation and the console.

Every route that reads or changes mail requires a bearer token (``mailward
token create``); health checks do not. Errors are JSON with a ``detail``
that says what was wrong.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text

from mailward import __version__
from mailward.quarantine import Filters, Quarantine, QuarantineError, item_dict
from mailward.store.models import ApiToken
from mailward.web.tokens import verify_token

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")
_bearer = HTTPBearer(auto_error=False)


def create_app(gateway: "Gateway") -> FastAPI:
    """create_app - the FastAPI application of one gateway."""
    app = FastAPI(title="mailward", version=__version__,
                  description="REST API of the mailward email security gateway")
    app.state.gateway = gateway
    quarantine = Quarantine(gateway)

    async def require_token(request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                            ) -> ApiToken:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required (mailward token create)",
                                headers={"WWW-Authenticate": "Bearer"})
        token = await verify_token(gateway.services.store, credentials.credentials)
        if token is None:
            log.warning("refused API request to %s from %s: invalid or revoked token",
                        request.url.path, request.client.host if request.client else "-")
            raise HTTPException(401, "invalid or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        return token

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        try:
            async with gateway.services.store.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            return JSONResponse({"status": "not ready", "detail": str(error)}, status_code=503)
        if gateway.pipeline is None:
            return JSONResponse({"status": "not ready", "detail": "pipeline not built"},
                                status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/api/v1/quarantine", tags=["quarantine"])
    async def list_quarantine(category: str | None = None, recipient: str | None = None,
                              sender: str | None = None, status: str | None = "held",
                              since: datetime | None = None, until: datetime | None = None,
                              limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                              token: ApiToken = Depends(require_token)) -> dict[str, Any]:
        items, total = await quarantine.list(
            Filters(category, recipient, sender, status or None, since, until), limit, offset)
        return {"total": total, "limit": limit, "offset": offset,
                "items": [item_dict(item) for item in items]}

    @app.get("/api/v1/quarantine/{item_id}", tags=["quarantine"])
    async def show_quarantine(item_id: str,
                              token: ApiToken = Depends(require_token)) -> dict[str, Any]:
        try:
            item = await quarantine.get(item_id)
        except QuarantineError as error:
            raise HTTPException(404, str(error)) from None
        data = item_dict(item)
        data["verdict"] = await quarantine.verdict(item)
        return data

    @app.post("/api/v1/quarantine/{item_id}/release", tags=["quarantine"])
    async def release_quarantine(item_id: str,
                                 token: ApiToken = Depends(require_token)) -> dict[str, Any]:
        try:
            item = await quarantine.release(item_id, by=f"token:{token.name}")
        except QuarantineError as error:
            raise HTTPException(409 if "not held" in str(error) else 404, str(error)) from None
        log.info("quarantine %s released by token %s", item_id, token.name)
        return item_dict(item)

    @app.delete("/api/v1/quarantine/{item_id}", tags=["quarantine"])
    async def delete_quarantine(item_id: str,
                                token: ApiToken = Depends(require_token)) -> dict[str, Any]:
        try:
            item = await quarantine.delete(item_id, by=f"token:{token.name}")
        except QuarantineError as error:
            raise HTTPException(409 if "released" in str(error) else 404, str(error)) from None
        log.info("quarantine %s deleted by token %s", item_id, token.name)
        return item_dict(item)

    return app
