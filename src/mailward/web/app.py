"""The HTTP service: REST API (FastAPI), click service and console.

Each area adds its routes as a router listed in ``ROUTERS``. Every route
that reads or changes mail requires authentication (``web.deps``); health
checks do not. Errors are JSON with a ``detail`` that says what was wrong.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from mailward import __version__

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")

# module:attribute of each APIRouter, in the order they are mounted.
ROUTERS = [
    "mailward.web.quarantine:router",
    "mailward.urls.web:router",
]


def create_app(gateway: "Gateway") -> FastAPI:
    """create_app - the FastAPI application of one gateway."""
    app = FastAPI(title="mailward", version=__version__,
                  description="REST API of the mailward email security gateway")
    app.state.gateway = gateway

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

    for path in ROUTERS:
        module, _, attribute = path.partition(":")
        app.include_router(getattr(importlib.import_module(module), attribute))
    return app
