"""The HTTP service: REST API (FastAPI), click service and console.

Each area adds its routes as a router listed in ``ROUTERS``. Every route
that reads or changes mail requires authentication (``web.deps``); health
checks do not. Errors are JSON with a ``detail`` that says what was wrong,
except on console pages, which answer with an HTML page. Static files
(the console's stylesheet, its script and the vendored Chart.js) are served
from ``/static``: nothing is loaded from another site.
"""

from __future__ import annotations

import importlib
import logging
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailward import __version__

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")

# module:attribute of each APIRouter, in the order they are mounted.
ROUTERS = [
    "mailward.web.login:router",
    "mailward.web.quarantine:router",
    "mailward.urls.web:router",
    "mailward.web.trace:router",
    "mailward.web.dashboards:router",
    "mailward.web.admin:router",
    "mailward.web.metrics:router",
    "mailward.web.console:router",
    "mailward.trap.web:router",
    "mailward.trap.console:router",
    "mailward.reports.web:router",
]
_PAGES = ("/console", "/login", "/logout", "/digest")


def _is_page(request: Request) -> bool:
    return request.url.path.startswith(_PAGES)


def warn_phishing_release(gateway: "Gateway") -> None:
    """warn_phishing_release - say so when end users can release phishing as spam.

    Without a language model the site trained, the phishing evidence is cues and
    URL findings, which seldom reach the phish thresholds: most phishing is held
    for its total score, with category spam, which users may release themselves.
    """
    from mailward.content.language import language_model_path

    if ("spam" in gateway.settings.web.user_release
            and not language_model_path(gateway.services).exists()):
        log.warning("no language model is trained, so most phishing is held as spam, "
                    "which web.user_release lets end users release themselves; train "
                    "one (mailward train --phishing DIR ...) or take spam out of "
                    "web.user_release")


def create_app(gateway: "Gateway") -> FastAPI:
    """create_app - the FastAPI application of one gateway."""
    from mailward.web.console import LoginRequired, login_redirect
    from mailward.web.metrics import ProcessMetrics
    from mailward.web.pages import render

    app = FastAPI(title="mailward", version=__version__,
                  description="REST API of the mailward email security gateway")
    app.state.gateway = gateway
    app.state.metrics = ProcessMetrics()
    warn_phishing_release(gateway)
    gateway.observers.append(app.state.metrics.observe)

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
        outages = await gateway.outages()
        down = [str(o) for o in outages if o.stops_mail]
        if down:
            return JSONResponse({"status": "not ready", "detail": "; ".join(down)},
                                status_code=503)
        degraded = [str(o) for o in outages if not o.stops_mail]
        extra = {"degraded": degraded} if degraded else {}
        return JSONResponse({"status": "ready", **extra})

    @app.exception_handler(LoginRequired)
    async def need_login(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_page(request):
            page = render(request, "error.html", status=exc.status_code,
                          message=str(exc.detail))
            page.headers.update(getattr(exc, "headers", None) or {})  # Retry-After...
            return page
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        log.warning("refused %s %s from %s: invalid input", request.method, request.url.path,
                    request.client.host if request.client else "-")
        if _is_page(request):
            return render(request, "error.html", status=422,
                          message="The request was not valid: " + "; ".join(
                              f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                              for e in exc.errors()[:5]))
        return JSONResponse({"detail": jsonable(exc.errors())}, status_code=422)

    static = str(resources.files("mailward.web").joinpath("static"))
    app.mount("/static", StaticFiles(directory=static), name="static")
    for path in ROUTERS:
        module, _, attribute = path.partition(":")
        app.include_router(getattr(importlib.import_module(module), attribute))
    return app


def jsonable(errors: list) -> list:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors)
