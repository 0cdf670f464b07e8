"""REST API and the report page: take reports, the analyst queue, overrides, figures.

- ``POST /api/v1/reports``: a report, as raw RFC 822 (``Content-Type:
  message/rfc822``) or JSON (``message`` in base64, or ``queue_id``, or
  ``message_id``). Authenticated by the reporter's signed token
  (``Authorization: Bearer mwr1...``, from ``mailward reports token``), or
  by an API token or console session: a user reports as one of their own
  addresses, staff may name any reporter.
- ``GET|POST /report/<token>``: the banner's "Report phishing" link. GET
  shows what will be reported; only the button (POST) reports, so a link
  scanner fetching the link reports nothing. No login: the token, signed
  per recipient, is the authority.
- ``GET /api/v1/reports``, ``GET /api/v1/reports/clusters`` (the analyst
  queue with ``status=analyst``), ``POST /api/v1/reports/clusters/<id>/
  verdict`` (an override, re-applying the actions), ``GET
  /api/v1/reports/stats`` and ``POST /api/v1/reports/tokens`` (staff).

SECURITY: a forged, altered or expired token is a 401 that says so and is
logged; nothing is recorded for it. Bodies are read up to
``reports.max_message_size``; past it the answer is 413.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import select

from mailward.reports import metrics
from mailward.reports.analysis import VERDICTS
from mailward.reports.service import SubmitError, service_of
from mailward.reports.tokens import REPORTER_PREFIX, recipient_of, reporter_token, verify_link, \
    verify_reporter
from mailward.store.models import MessageRecord, ReportCluster, UserReport
from mailward.web import audit
from mailward.web.deps import COOKIE, Principal, current_principal, get_gateway, require, \
    scope_matches
from mailward.web.security import client_ip, security_headers, visible

log = logging.getLogger("mailward.reports")
router = APIRouter(tags=["reports"])
_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=COOKIE, auto_error=False)
KINDS = ("phish", "spam", "malware", "impostor", "other")


class ReportBody(BaseModel):
    message: str | None = Field(None, description="the original message, RFC 822, base64")
    queue_id: str | None = Field(None, max_length=32)
    message_id: str | None = Field(None, max_length=998)
    reporter: str | None = Field(None, max_length=320)
    kind: str = Field("phish", pattern="^(phish|spam|malware|impostor|other)$")


class VerdictBody(BaseModel):
    verdict: str = Field(..., description="malicious, spam, clean or simulation")
    category: str = Field("", pattern="^(|phish|malware|impostor)$")
    comment: str = Field("", max_length=2000)


class TokenBody(BaseModel):
    address: str = Field(..., max_length=320)
    days: int = Field(0, ge=0, le=3650, description="lifetime in days, 0 = no expiry")


async def _body(request: Request, limit: int) -> bytes:
    """_body - the request body, refused with 413 past limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 65536:
        raise HTTPException(413, f"the report is larger than {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit * 4 // 3 + 65536:
            raise HTTPException(413, f"the report is larger than {limit} bytes")
    return bytes(data)


async def _reporter(request: Request, credentials: HTTPAuthorizationCredentials | None,
                    cookie: str | None, named: str | None) -> tuple[str, str]:
    """_reporter - (reporter, actor) of a request, or 401/403 saying why not."""
    gateway = get_gateway(request)
    service = service_of(gateway)
    if credentials is not None and credentials.credentials.startswith(REPORTER_PREFIX):
        address = verify_reporter(service.key, credentials.credentials)
        if address is None:
            log.warning("refused report from %s: forged, altered or expired report token",
                        client_ip(request) or "-")
            raise HTTPException(401, "the report token is not valid (forged, altered or "
                                     "expired): ask your administrator for a new one",
                                headers={"WWW-Authenticate": "Bearer"})
        if named and named.lower() != address:
            raise HTTPException(403, f"this report token reports as {address} only")
        return address, f"reporter:{address}"
    principal: Principal = await current_principal(request, credentials, cookie)
    if not scope_matches(principal.scopes, "reports:write"):
        raise HTTPException(403, "not allowed: the token needs the reports:write scope")
    if principal.staff:
        if not named:
            raise HTTPException(422, "name the reporter (reporter field)")
        return named.lower(), principal.name
    own = sorted(principal.addresses)
    if named and named.lower() not in principal.addresses:
        raise HTTPException(403, "you may report only as one of your own addresses")
    if not own and not named:
        raise HTTPException(403, "your account has no address to report as")
    return (named or own[0]).lower(), principal.name


def _answer(error: SubmitError) -> HTTPException:
    return HTTPException(error.status, error.text)


@router.post("/api/v1/reports", status_code=202, summary="Report a message")
async def report(request: Request,
                 credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                 cookie: str | None = Depends(_cookie)) -> dict[str, Any]:
    gateway = get_gateway(request)
    service = service_of(gateway)
    limit = gateway.settings.reports.max_message_size
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw: bytes | None = None
    fields = ReportBody()
    if content_type == "message/rfc822":
        named = request.query_params.get("reporter")
        reporter, actor = await _reporter(request, credentials, cookie, named)
        raw = await _body(request, limit)
        fields = ReportBody(kind=request.query_params.get("kind", "phish")
                            if request.query_params.get("kind", "phish") in KINDS else "phish")
    else:
        data = await _body(request, limit)
        try:
            fields = ReportBody.model_validate_json(data or b"{}")
        except ValueError as error:
            raise HTTPException(422, f"the body is neither message/rfc822 nor valid JSON "
                                     f"({str(error)[:200]})") from None
        reporter, actor = await _reporter(request, credentials, cookie, fields.reporter)
        if fields.message:
            try:
                raw = base64.b64decode(fields.message, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(422, "message: not valid base64 of an RFC 822 message") \
                    from None
    if raw is None and not fields.queue_id and not fields.message_id:
        raise HTTPException(422, "no original message: send it as message/rfc822, or "
                                 "give message (base64), queue_id or message_id")
    try:
        taken = await service.submit(reporter, "api", raw=raw, queue_id=fields.queue_id,
                                     message_id=fields.message_id, kind=fields.kind)
    except SubmitError as error:
        raise _answer(error) from None
    log.info("report %d taken from %s by %s", taken.report_id, reporter, actor)
    return taken.as_dict()


# The banner's link.


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
            f"{html.escape(title)}</title><link rel=stylesheet href=/static/console.css>"
            f"</head><body><main class=narrow><h1>{html.escape(title)}</h1>{body}"
            f"</main></body></html>")
    return HTMLResponse(text, status_code=status, headers=security_headers())


async def _link_copy(request: Request, token: str) -> tuple[str, MessageRecord]:
    gateway = get_gateway(request)
    service = service_of(gateway)
    claim = verify_link(service.key, token)
    record = None
    if claim is not None:
        async with gateway.services.store.session() as session:
            record = await session.scalar(select(MessageRecord).where(
                MessageRecord.queue_id == claim.queue_id))
    recipient = recipient_of(service.key, claim, list(record.recipients)) \
        if claim and record else None
    if recipient is None or record is None:
        log.warning("refused report link from %s: not a valid report link",
                    client_ip(request) or "-")
        raise HTTPException(404, "This is not a valid report link.")
    return recipient, record


@router.get("/report/{token}", response_class=HTMLResponse, include_in_schema=False)
async def report_page(request: Request, token: str) -> HTMLResponse:
    try:
        recipient, record = await _link_copy(request, token)
    except HTTPException as error:
        return _page("Report a message", f"<p>{html.escape(str(error.detail))}</p>", 404)
    body = (f"<p>Report this message to your security team as phishing?</p>"
            f"<dl><dt>From</dt><dd>{html.escape(visible(record.header_from, 200))}</dd>"
            f"<dt>Subject</dt><dd>{html.escape(visible(record.subject, 200))}</dd>"
            f"<dt>Received</dt><dd>{record.received_at:%Y-%m-%d %H:%M} UTC</dd></dl>"
            f"<form method=post><button type=submit>Report phishing</button></form>")
    return _page("Report a message", body)


@router.post("/report/{token}", response_class=HTMLResponse, include_in_schema=False)
async def report_link(request: Request, token: str) -> HTMLResponse:
    try:
        recipient, record = await _link_copy(request, token)
    except HTTPException as error:
        return _page("Report a message", f"<p>{html.escape(str(error.detail))}</p>", 404)
    try:
        taken = await service_of(get_gateway(request)).submit(recipient, "link",
                                                              queue_id=record.queue_id)
    except SubmitError as error:
        return _page("Report not taken", f"<p>{html.escape(error.text)}</p>", error.status)
    text = "You had already reported it; thank you." if taken.duplicate else \
        "Thank you. Your security team is checking the message; you will get an email " \
        "with the outcome."
    return _page("Report received", f"<p>{html.escape(text)}</p>", 202)


# Staff: reports, the analyst queue, overrides, tokens, figures.


def _report_dict(row: UserReport) -> dict[str, Any]:
    return {"id": row.id, "reporter": row.reporter, "reported_at": row.reported_at.isoformat(),
            "source": row.source, "kind": row.kind, "queue_id": row.queue_id,
            "matched_by": row.matched_by, "cluster": row.cluster_id, "status": row.status,
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "notified_at": row.notified_at.isoformat() if row.notified_at else None,
            "note": row.note}


def cluster_dict(row: ReportCluster) -> dict[str, Any]:
    return {"id": row.id, "created_at": row.created_at.isoformat(), "status": row.status,
            "verdict": row.verdict, "confidence": row.confidence, "sender": row.sender,
            "subject": row.subject, "messages": len(row.queue_ids),
            "queue_ids": row.queue_ids[:100], "simulation": row.simulation,
            "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "acted_at": row.acted_at.isoformat() if row.acted_at else None,
            "evidence": {k: v for k, v in row.evidence.items() if k != "related"}}


@router.get("/api/v1/reports", summary="Reports, newest first")
async def list_reports(request: Request, limit: int = Query(50, ge=1, le=500),
                       offset: int = Query(0, ge=0, le=1_000_000),
                       principal: Principal = Depends(require("reports:read"))
                       ) -> dict[str, Any]:
    async with get_gateway(request).services.store.session() as session:
        rows = (await session.scalars(select(UserReport).order_by(UserReport.id.desc())
                                      .limit(limit).offset(offset))).all()
    return {"reports": [_report_dict(r) for r in rows]}


@router.get("/api/v1/reports/clusters", summary="Reported campaigns (status=analyst: the queue)")
async def list_clusters(request: Request, status: str | None = Query(None, max_length=16),
                        limit: int = Query(50, ge=1, le=500),
                        principal: Principal = Depends(require("reports:read"))
                        ) -> dict[str, Any]:
    query = select(ReportCluster).order_by(ReportCluster.id.desc()).limit(limit)
    if status:
        query = query.where(ReportCluster.status == status)
    async with get_gateway(request).services.store.session() as session:
        rows = (await session.scalars(query)).all()
    return {"clusters": [cluster_dict(r) for r in rows]}


@router.get("/api/v1/reports/clusters/{cluster_id}", summary="One reported campaign")
async def show_cluster(request: Request, cluster_id: int,
                       principal: Principal = Depends(require("reports:read"))
                       ) -> dict[str, Any]:
    async with get_gateway(request).services.store.session() as session:
        row = await session.get(ReportCluster, cluster_id)
        if row is None:
            raise HTTPException(404, f"no reported campaign {cluster_id}")
        reports = (await session.scalars(select(UserReport).where(
            UserReport.cluster_id == cluster_id))).all()
    return {**cluster_dict(row), "reports": [_report_dict(r) for r in reports]}


@router.post("/api/v1/reports/clusters/{cluster_id}/verdict",
             summary="Override a campaign's verdict; the actions are re-applied")
async def override(request: Request, cluster_id: int, body: VerdictBody,
                   principal: Principal = Depends(require("reports:write"))) -> dict[str, Any]:
    if not principal.staff:
        raise HTTPException(403, "only analysts and admins may override a verdict")
    if body.verdict not in VERDICTS:
        raise HTTPException(422, f"verdict must be one of {', '.join(VERDICTS)}")
    gateway = get_gateway(request)
    try:
        result = await service_of(gateway).override(cluster_id, body.verdict, principal.name,
                                                    body.category)
    except SubmitError as error:
        raise _answer(error) from None
    await audit.record(gateway.services.store, principal.name, principal.role,
                       "reports.override", str(cluster_id), ip=principal.ip,
                       verdict=body.verdict, previous=result["previous"],
                       comment=body.comment)
    return result


@router.post("/api/v1/reports/tokens", status_code=201, summary="Issue a reporter token")
async def issue_token(request: Request, body: TokenBody,
                      principal: Principal = Depends(require("reports:write"))
                      ) -> dict[str, Any]:
    if not principal.staff:
        raise HTTPException(403, "only analysts and admins issue report tokens")
    if "@" not in body.address:
        raise HTTPException(422, "address: not an email address")
    gateway = get_gateway(request)
    lifetime = body.days * 86400 if body.days else None
    token = reporter_token(service_of(gateway).key, body.address, lifetime)
    await audit.record(gateway.services.store, principal.name, principal.role,
                       "reports.token", body.address.lower(), ip=principal.ip)
    return {"address": body.address.lower(), "token": token}


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=30)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if since >= until:
        raise HTTPException(422, "since must be before until")
    return since, until


@router.get("/api/v1/reports/stats", summary="Reporter, user risk and organisation figures")
async def stats(request: Request, since: datetime | None = None, until: datetime | None = None,
                principal: Principal = Depends(require("reports:read"))) -> dict[str, Any]:
    start, end = _period(since, until)
    return await metrics.stats(get_gateway(request).services.store, start, end)


# The Outlook add-in, served from this site (its manifest names this site's address).

CLIENT_FILES = {"manifest.xml": "application/xml", "commands.html": "text/html",
                "settings.html": "text/html", "report.js": "text/javascript",
                "icon-64.png": "image/png"}


@router.get("/report-clients/outlook/{name}", include_in_schema=False)
async def outlook_client(request: Request, name: str):
    from importlib import resources

    from fastapi.responses import Response

    if name not in CLIENT_FILES:
        raise HTTPException(404, f"no such file; one of {', '.join(CLIENT_FILES)}")
    data = resources.files("mailward.reports").joinpath("clients", "outlook", name).read_bytes()
    if name == "manifest.xml":
        public = html.escape(get_gateway(request).settings.public_url, quote=True)
        data = data.replace(b"{{PUBLIC_URL}}", public.encode())
    headers = {"X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'self'; script-src 'self' "
                                          "https://appsforoffice.microsoft.com; "
                                          "connect-src 'self'; img-src 'self'"}
    return Response(data, media_type=CLIENT_FILES[name], headers=headers)
