"""REST routes of the quarantine: list, show, release, delete."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from mailward.quarantine import Filters, Quarantine, QuarantineError, item_dict
from mailward.store.models import ApiToken
from mailward.web.deps import get_gateway, require_token

log = logging.getLogger("mailward.web")
router = APIRouter(prefix="/api/v1/quarantine", tags=["quarantine"])


def _quarantine(request: Request) -> Quarantine:
    return Quarantine(get_gateway(request))


@router.get("")
async def list_quarantine(request: Request, category: str | None = None,
                          recipient: str | None = None, sender: str | None = None,
                          status: str | None = "held", since: datetime | None = None,
                          until: datetime | None = None,
                          limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                          token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    items, total = await _quarantine(request).list(
        Filters(category, recipient, sender, status or None, since, until), limit, offset)
    return {"total": total, "limit": limit, "offset": offset,
            "items": [item_dict(item) for item in items]}


@router.get("/{item_id}")
async def show_quarantine(request: Request, item_id: str,
                          token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    quarantine = _quarantine(request)
    try:
        item = await quarantine.get(item_id)
    except QuarantineError as error:
        raise HTTPException(404, str(error)) from None
    data = item_dict(item)
    data["verdict"] = await quarantine.verdict(item)
    return data


@router.post("/{item_id}/release")
async def release_quarantine(request: Request, item_id: str,
                             token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    try:
        item = await _quarantine(request).release(item_id, by=f"token:{token.name}")
    except QuarantineError as error:
        raise HTTPException(409 if "not held" in str(error) else 404, str(error)) from None
    log.info("quarantine %s released by token %s", item_id, token.name)
    return item_dict(item)


@router.delete("/{item_id}")
async def delete_quarantine(request: Request, item_id: str,
                            token: ApiToken = Depends(require_token)) -> dict[str, Any]:
    try:
        item = await _quarantine(request).delete(item_id, by=f"token:{token.name}")
    except QuarantineError as error:
        raise HTTPException(409 if "released" in str(error) else 404, str(error)) from None
    log.info("quarantine %s deleted by token %s", item_id, token.name)
    return item_dict(item)
