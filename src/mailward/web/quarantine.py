"""REST routes of the quarantine: list, show, act (one or in bulk), requests.

Every route works through ``web.review.Review``, which applies the
principal's role: staff see everything, users their own mail only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import Field

from mailward.quarantine import Filters, item_dict
from mailward.web.deps import Body, Principal, get_gateway, require
from mailward.web.review import Review, ReviewError

log = logging.getLogger("mailward.web")
router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"])
MAX_PAGE = 500
MAX_OFFSET = 1_000_000

Action = Literal["release", "release_allow", "not_spam", "allow_sender", "block_sender",
                 "delete", "request_release"]


class ReleaseBody(Body):
    allow_sender: bool = Field(False, description="also allow the sender from now on")
    not_spam: bool = Field(False, description="teach the spam model this is legitimate mail")


class RequestBody(Body):
    comment: str = Field("", max_length=2000, description="why the release is needed")


class BulkBody(Body):
    action: Action
    ids: list[str] = Field(..., min_length=1, max_length=500)


def review(request: Request, principal: Principal) -> Review:
    return Review(get_gateway(request), principal)


def _answer(error: ReviewError) -> HTTPException:
    return HTTPException(error.status, str(error))


@router.get("", summary="List quarantined messages (users: their own)")
async def list_quarantine(
        request: Request,
        category: Literal["spam", "phish", "malware", "impostor", "policy", "auth"] | None = None,
        recipient: str | None = Query(None, max_length=320),
        sender: str | None = Query(None, max_length=320),
        status: Literal["held", "released", "deleted", "all"] = "held",
        since: datetime | None = None, until: datetime | None = None,
        limit: int = Query(50, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0, le=MAX_OFFSET),
        principal: Principal = Depends(require("quarantine:read"))) -> dict[str, Any]:
    filters = Filters(category, recipient, sender, None if status == "all" else status,
                      since, until)
    items, total = await review(request, principal).list(filters, limit, offset)
    return {"total": total, "limit": limit, "offset": offset,
            "items": [item_dict(item) for item in items]}


@router.get("/requests", summary="Pending release requests (users: their own)")
async def list_requests(request: Request, limit: int = Query(100, ge=1, le=MAX_PAGE),
                        offset: int = Query(0, ge=0, le=MAX_OFFSET),
                        principal: Principal = Depends(require("quarantine:read"))
                        ) -> dict[str, Any]:
    return {"items": await review(request, principal).pending_requests(limit, offset)}


@router.post("/requests/{request_id}/approve", summary="Approve a release request (staff)")
async def approve_request(request: Request, request_id: int,
                          principal: Principal = Depends(require("quarantine:write"))
                          ) -> dict[str, Any]:
    try:
        return await review(request, principal).decide(request_id, True)
    except ReviewError as error:
        raise _answer(error) from None


@router.post("/requests/{request_id}/deny", summary="Deny a release request (staff)")
async def deny_request(request: Request, request_id: int,
                       principal: Principal = Depends(require("quarantine:write"))
                       ) -> dict[str, Any]:
    try:
        return await review(request, principal).decide(request_id, False)
    except ReviewError as error:
        raise _answer(error) from None


@router.post("/bulk", summary="One action on many messages")
async def bulk(request: Request, body: BulkBody,
               principal: Principal = Depends(require("quarantine:write"))) -> dict[str, Any]:
    results = await review(request, principal).bulk(body.ids, body.action)
    return {"action": body.action, "results": results}


@router.get("/{item_id}", summary="One message: verdict, headers, text, files")
async def show_quarantine(request: Request, item_id: str,
                          principal: Principal = Depends(require("quarantine:read"))
                          ) -> dict[str, Any]:
    try:
        return (await review(request, principal).view(item_id)).as_dict()
    except ReviewError as error:
        raise _answer(error) from None


@router.post("/{item_id}/release", summary="Deliver the original (users: not malware/phish)")
async def release_quarantine(request: Request, item_id: str, body: ReleaseBody | None = None,
                             principal: Principal = Depends(require("quarantine:write"))
                             ) -> dict[str, Any]:
    body = body or ReleaseBody()
    try:
        return await review(request, principal).release(
            item_id, allow_sender=body.allow_sender, not_spam=body.not_spam)
    except ReviewError as error:
        raise _answer(error) from None


async def _act(request: Request, principal: Principal, item_id: str, action: str,
               comment: str = "") -> dict[str, Any]:
    try:
        return await review(request, principal).act(item_id, action, comment)
    except ReviewError as error:
        raise _answer(error) from None


@router.post("/{item_id}/not-spam", summary="Release and teach the model it is not spam")
async def not_spam(request: Request, item_id: str,
                   principal: Principal = Depends(require("quarantine:write"))) -> dict[str, Any]:
    return await _act(request, principal, item_id, "not_spam")


@router.post("/{item_id}/allow-sender", summary="Allow the sender (staff: everyone; users: self)")
async def allow_sender(request: Request, item_id: str,
                       principal: Principal = Depends(require("quarantine:write"))
                       ) -> dict[str, Any]:
    return await _act(request, principal, item_id, "allow_sender")


@router.post("/{item_id}/block-sender", summary="Block the sender (staff: everyone; users: self)")
async def block_sender(request: Request, item_id: str,
                       principal: Principal = Depends(require("quarantine:write"))
                       ) -> dict[str, Any]:
    return await _act(request, principal, item_id, "block_sender")


@router.post("/{item_id}/request-release", summary="Ask staff to release a message")
async def request_release(request: Request, item_id: str, body: RequestBody | None = None,
                          principal: Principal = Depends(require("quarantine:write"))
                          ) -> dict[str, Any]:
    return await _act(request, principal, item_id, "request_release",
                      (body or RequestBody()).comment)


@router.delete("/{item_id}", summary="Delete the message (its record stays for the trace)")
async def delete_quarantine(request: Request, item_id: str,
                            principal: Principal = Depends(require("quarantine:write"))
                            ) -> dict[str, Any]:
    return await _act(request, principal, item_id, "delete")

