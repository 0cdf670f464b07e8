"""REST API of the post-delivery response: incidents, intelligence, pulls.

Every route needs a token or a console session of staff: ``trap:read`` to
look, ``trap:write`` to change (an incident's status, a pull, a restore,
an indicator, a policy update); every change is audited. Bodies are
bounded: at most ``MAX_INDICATORS`` indicators per request.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from mailward.intel.feeds import FeedResult, _item
from mailward.intel.store import IndicatorError
from mailward.mailbox.base import MailboxError
from mailward.store.models import Incident
from mailward.trap import incidents as workflow
from mailward.trap.dashboard import threats
from mailward.web import audit
from mailward.web.deps import Principal, get_gateway, require

router = APIRouter(prefix="/api/v1/trap", tags=["trap"])
MAX_INDICATORS = 10_000


def _parts(request: Request):
    gateway = get_gateway(request)
    service = gateway.services.extras.get("trap")
    return gateway, service


def _scanner(request: Request):
    gateway, service = _parts(request)
    if service is not None:
        return service.scanner
    from mailward.trap.retroscan import Retroscan

    return Retroscan(gateway.settings, gateway.services.store)


class IndicatorIn(BaseModel):
    type: str | None = None
    value: str = Field(max_length=2048)
    category: str | None = None
    source: str = Field("api", max_length=128)
    confidence: int = Field(100, ge=0, le=100)
    expires: str | None = None
    comment: str = Field("", max_length=1000)


class IndicatorsIn(BaseModel):
    indicators: list[IndicatorIn] = Field(max_length=MAX_INDICATORS)
    force: bool = False


class StatusIn(BaseModel):
    status: Literal["open", "investigating", "closed"]
    note: str = Field("", max_length=4000)


class PolicyIn(BaseModel):
    block: Literal["none", "sender", "domain"] = "domain"
    campaign_rule: bool = True
    expires_seconds: float | None = Field(None, gt=0, le=365 * 86400)


class PullIn(BaseModel):
    message: str = Field(max_length=998, description="Message-ID or queue id")
    reason: str = Field("pulled from the API", max_length=500)


@router.get("/incidents", summary="Incidents, newest first")
async def list_incidents(request: Request, status: str | None = None,
                         limit: int = Query(100, ge=1, le=1000),
                         principal: Principal = Depends(require("trap:read"))
                         ) -> list[dict[str, Any]]:
    store = get_gateway(request).services.store
    async with store.session() as session:
        query = select(Incident).order_by(Incident.id.desc()).limit(limit)
        if status:
            query = query.where(Incident.status == status)
        rows = (await session.scalars(query)).all()
    return [workflow.view(row) for row in rows]


@router.get("/incidents/{incident_id}", summary="One incident with its copies and clicks")
async def show_incident(request: Request, incident_id: int,
                        principal: Principal = Depends(require("trap:read"))
                        ) -> dict[str, Any]:
    try:
        return await _scanner(request).reassess(incident_id)
    except workflow.IncidentError as error:
        raise HTTPException(404, str(error)) from None


@router.post("/incidents/{incident_id}/status", summary="Open, investigating or closed")
async def set_status(request: Request, incident_id: int, body: StatusIn,
                     principal: Principal = Depends(require("trap:write"))
                     ) -> dict[str, Any]:
    store = get_gateway(request).services.store
    try:
        async with store.session() as session:
            incident = await workflow.set_status(session, incident_id, body.status, body.note,
                                                 principal.name)
            await session.commit()
            view = workflow.view(incident)
    except workflow.IncidentError as error:
        raise HTTPException(404 if "no incident" in str(error) else 422, str(error)) from None
    await audit.record(store, principal.name, principal.role, "incident.status",
                       str(incident_id), ip=principal.ip, status=body.status)
    return view


@router.post("/incidents/{incident_id}/policy", summary="Block the sender, make a campaign rule")
async def policy_update(request: Request, incident_id: int, body: PolicyIn,
                        principal: Principal = Depends(require("trap:write"))
                        ) -> dict[str, Any]:
    from mailward.trap.policy import apply_rule, block_sender, campaign_rule

    gateway = get_gateway(request)
    settings, store = gateway.settings, gateway.services.store
    result: dict[str, Any] = {"blocked": [], "rule": None}
    try:
        if body.block != "none":
            result["blocked"] = await block_sender(settings, store, incident_id, body.block,
                                                   body.expires_seconds, principal.name)
        if body.campaign_rule:
            rule = await campaign_rule(settings, store, incident_id, body.expires_seconds,
                                       principal.name)
            result["rule"] = {"id": rule.id, "fingerprint": rule.fingerprint,
                              "scan": await apply_rule(_scanner(request), rule)}
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    await audit.record(store, principal.name, principal.role, "incident.policy",
                       str(incident_id), ip=principal.ip, block=body.block,
                       rule=bool(body.campaign_rule))
    return result


@router.post("/indicators", summary="Add indicators (retro-scanned at once)")
async def add_indicators(request: Request, body: IndicatorsIn,
                         principal: Principal = Depends(require("trap:write"))
                         ) -> dict[str, Any]:
    from mailward.trap.intake import add_feed

    gateway = get_gateway(request)
    feed = FeedResult()
    for number, entry in enumerate(body.indicators, 1):
        try:
            feed.add(_item(entry.model_dump(), "api", entry.category), f"item {number}")
        except IndicatorError as error:
            feed.error(f"item {number}: {error}")
    feed.dedupe()
    if feed.errors and not feed.indicators:
        raise HTTPException(422, "; ".join(feed.errors[:20]))
    report = await add_feed(gateway.settings, gateway.services.store, feed, body.force,
                            principal.name)
    await audit.record(gateway.services.store, principal.name, principal.role, "intel.add",
                       f"{len(feed.indicators)} indicators", ip=principal.ip,
                       added=report.added, refused=len(report.refused), force=body.force)
    return report.as_dict()


@router.delete("/indicators", summary="Remove an indicator (of every source or one)")
async def remove_indicator(request: Request,
                           type: Literal["url", "domain", "ip", "sha256", "sender",
                                         "sender_domain"],
                           value: str = Query(max_length=2048),
                           source: str | None = Query(None, max_length=128),
                           principal: Principal = Depends(require("trap:write"))
                           ) -> dict[str, Any]:
    from mailward.intel.store import IntelStore, normalize

    gateway = get_gateway(request)
    try:
        value = normalize(type, value)
    except IndicatorError as error:
        raise HTTPException(422, str(error)) from None
    removed = await IntelStore(gateway.services.store).remove(type, value, source)
    if not removed:
        raise HTTPException(404, f"no {type} indicator {value}"
                                 + (f" from {source}" if source else ""))
    await audit.record(gateway.services.store, principal.name, principal.role,
                       "intel.remove", f"{type}:{value}", ip=principal.ip,
                       source=source, removed=removed)
    return {"type": type, "value": value, "removed": removed}


@router.post("/scan", summary="Retro-scan what changed since the last scan, now")
async def scan_now(request: Request, principal: Principal = Depends(require("trap:write"))
                   ) -> dict[str, Any]:
    return (await _scanner(request).run_pending()).as_dict()


@router.post("/retract", summary="Pull every copy of a message into Quarantine")
async def retract(request: Request, body: PullIn,
                  principal: Principal = Depends(require("trap:write"))) -> list[dict]:
    return await _pull(request, body, principal, restore=False)


@router.post("/restore", summary="Put every pulled copy of a message back where it was")
async def restore(request: Request, body: PullIn,
                  principal: Principal = Depends(require("trap:write"))) -> list[dict]:
    return await _pull(request, body, principal, restore=True)


async def _pull(request: Request, body: PullIn, principal: Principal,
                restore: bool) -> list[dict]:
    scanner = _scanner(request)
    try:
        if restore:
            results = await scanner.retractor.restore_message(body.message, body.reason,
                                                              actor=principal.name)
        else:
            results = await scanner.retractor.retract_message(body.message, body.reason,
                                                              actor=principal.name)
    except MailboxError as error:
        raise HTTPException(404, str(error)) from None
    await audit.record(scanner.store, principal.name, principal.role,
                       "message.restore" if restore else "message.retract", body.message,
                       ip=principal.ip, copies=len(results))
    return [result.as_dict() for result in results]


@router.get("/threats", summary="Campaigns, most attacked people, indicators by source")
async def threat_tracking(request: Request, hours: int = Query(24 * 14, ge=1, le=24 * 90),
                          principal: Principal = Depends(require("trap:read"))
                          ) -> dict[str, Any]:
    return await threats(get_gateway(request).services.store, hours)
