"""The console's incident page: what one incident touched, and its workflow.

Staff open an incident from the incidents dashboard: the indicator, the
assessment, every affected copy with its pull, whether it had been read and
who clicked before the pull; a form moves it through open, investigating and
closed (with a note). Clicks are counted again on every view, since a click
may be logged after the retro-scan.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from mailward.trap import incidents as workflow
from mailward.trap.web import _scanner
from mailward.web import audit
from mailward.web.console import back, console_user, need
from mailward.web.deps import Principal, get_gateway
from mailward.web.pages import render

router = APIRouter(include_in_schema=False)

NOTICES = {"saved": "Saved."}


@router.get("/console/incidents/{incident_id}")
async def incident_page(request: Request, incident_id: int,
                        done: str = Query("", max_length=32),
                        principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "trap:read")
    try:
        incident = await _scanner(request).reassess(incident_id)
    except workflow.IncidentError as error:
        return render(request, "error.html", status=404, message=str(error))
    return render(request, "incident.html", i=incident, statuses=workflow.STATUSES,
                  can_write=principal.allows("trap:write"), notice=NOTICES.get(done, ""))


@router.post("/console/incidents/{incident_id}/status")
async def incident_status(request: Request, incident_id: int,
                          status: str = Form(..., max_length=16),
                          note: str = Form("", max_length=workflow.MAX_NOTE),
                          principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "trap:write")
    store = get_gateway(request).services.store
    try:
        async with store.session() as session:
            await workflow.set_status(session, incident_id, status, note, principal.name)
            await session.commit()
    except workflow.IncidentError as error:
        return render(request, "error.html", status=404 if "no incident" in str(error) else 422,
                      message=str(error))
    await audit.record(store, principal.name, principal.role, "incident.status",
                       str(incident_id), ip=principal.ip, status=status)
    return back(f"/console/incidents/{incident_id}", "saved")
