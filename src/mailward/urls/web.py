"""HTTP routes of URL defence: the click service, link decoding, the click log.

``GET|HEAD /u/{token}?u=URL`` is the click service (no authentication: it
is what recipients' browsers open; the signature is the authority). The
analyst routes under ``/api/v1/url`` need a bearer token.

SECURITY: pages echo only escaped text, forbid every active content by CSP,
and are never cached; a refused link is answered 400 with no Location.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from mailward.intel.store import url_hash
from mailward.store.models import ApiToken, Click
from mailward.urls import click as clicks
from mailward.urls.normalize import normalize_url
from mailward.web.deps import get_gateway, require_token

log = logging.getLogger("mailward.urls")
router = APIRouter(tags=["urls"])

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex, nofollow", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {**_HEADERS, "Content-Security-Policy":
                 "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'",
                 "X-Frame-Options": "DENY"}


def _page(title: str, body: str, status: int, method: str) -> Response:
    """_page - an HTML page with the safe headers (no body for HEAD)."""
    document = (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<meta name=viewport content='width=device-width'><title>{html.escape(title)}"
                "</title></head><body style='font-family:sans-serif;max-width:40em;margin:3em auto;"
                "padding:0 1em;color:#222'>"
                f"<h1 style='font-size:1.4em'>{html.escape(title)}</h1>{body}</body></html>")
    if method == "HEAD":
        return Response(status_code=status, headers=_PAGE_HEADERS, media_type="text/html")
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _client_ip(request: Request) -> str:
    """_client_ip - the peer address of the request."""
    return request.client.host if request.client else ""


@router.api_route("/u/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def follow(request: Request, token: str) -> Response:
    """follow - verify, judge and log one click; redirect, warn or block."""
    service = clicks.click_service(get_gateway(request))
    query = request.url.query
    confirmed = query.startswith("go=1&")
    asked = clicks.Request(token=token, query=query.removeprefix("go=1&"),
                           method=request.method, client_ip=_client_ip(request),
                           user_agent=request.headers.get("user-agent", ""))
    link = service.verify(asked)
    if not link.valid:
        log.warning("refused click link from %s: %s (token %.60s)", asked.client_ip or "-",
                    link.problem, token)
        return _page("This link is not valid",
                     "<p>The link was changed or damaged after it was sent, so it cannot be "
                     "followed. Ask the sender for the link again.</p>", 400, request.method)
    judgement = await service.judge(link, confirmed)
    await service.record(asked, judgement)
    if judgement.verdict in (clicks.ALLOWED, clicks.THROUGH):
        return RedirectResponse(judgement.target, status_code=302, headers=_HEADERS)
    return _warning(request, judgement)


def _warning(request: Request, judgement: clicks.Judgement) -> Response:
    """_warning - the warning (200) or block (403) page of a judged click."""
    blocked = judgement.verdict == clicks.BLOCKED
    title = "This link was blocked" if blocked else "This link may be dangerous"
    body = (f"<p>{'mailward blocked' if blocked else 'mailward warns about'} the link to "
            f"<code style='word-break:break-all'>{html.escape(judgement.target[:2000])}</code>"
            f".</p><p><strong>Why:</strong> {html.escape(judgement.reason)}.</p>")
    if judgement.may_continue:
        onward = f"{request.url.path}?go=1&{request.url.query}"
        body += (f"<p><a href=\"{html.escape(onward, quote=True)}\" rel=noreferrer>"
                 "Continue to the site anyway</a> (this is recorded).</p>")
    else:
        body += "<p>If you need this site, ask your IT or security team.</p>"
    return _page(title, body, 403 if blocked else 200, request.method)


# Analysts.


@router.get("/api/v1/url/decode")
async def decode(request: Request, url: str = Query(..., max_length=200_000),
                 token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    """decode - the original URL of a rewritten link, and whether its signature holds."""
    gateway = get_gateway(request)
    service = clicks.click_service(gateway)
    link = service.signer.decode(url)
    recipients: list[str] = []
    if link.valid:
        from mailward.store.models import MessageRecord

        async with gateway.services.store.session() as session:
            recipients = list(await session.scalar(select(MessageRecord.recipients).where(
                MessageRecord.queue_id == link.queue_id)) or [])
    return {"valid": link.valid, "problem": link.problem, "url": link.url,
            "queue_id": link.queue_id, "key_id": link.key_id,
            "recipient": service.signer.recipient_of(link, recipients) if link.valid else None}


def click_dict(click: Click) -> dict[str, Any]:
    """click_dict - one click as JSON."""
    return {"id": click.id, "queue_id": click.queue_id, "recipient": click.recipient,
            "url": click.url, "url_hash": click.url_hash,
            "clicked_at": click.clicked_at.isoformat(), "client_ip": click.client_ip,
            "user_agent": click.user_agent, "method": click.method, "verdict": click.verdict,
            "reason": click.reason, "automated": click.automated,
            "automated_reason": click.automated_reason}


@router.get("/api/v1/url/clicks")
async def list_clicks(request: Request, queue_id: str | None = None,
                      recipient: str | None = None, url: str | None = None,
                      since: datetime | None = None, human: bool = False,
                      limit: int = Query(100, ge=1, le=1000),
                      token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    """list_clicks - the click log, newest first (filters: message, recipient, URL)."""
    query = select(Click).order_by(Click.clicked_at.desc(), Click.id.desc()).limit(limit)
    if queue_id:
        query = query.where(Click.queue_id == queue_id)
    if recipient:
        query = query.where(Click.recipient == recipient.lower())
    if url:
        query = query.where(Click.url_hash == url_hash(normalize_url(url) or url))
    if since:
        query = query.where(Click.clicked_at >= since)
    if human:
        query = query.where(Click.automated.is_(False))
    await clicks.click_service(get_gateway(request)).flush()
    async with get_gateway(request).services.store.session() as session:
        rows = (await session.scalars(query)).all()
    return {"items": [click_dict(row) for row in rows]}
