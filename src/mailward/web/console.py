"""The console's pages: quarantine, requests, trace, dashboards, administration.

Pages are server-rendered (Jinja2) and work without scripts; charts are
drawn by Chart.js, served from ``/static``. Each form posts to a route here
that calls the same service as the REST API (``Review``, ``Accounts``,
``trace``...), then redirects (post/redirect/get) with a fixed notice code.

SECURITY: pages need a session (otherwise a redirect to the login form);
every form carries the session's CSRF token, checked before anything is
done. Nothing from a message is marked safe in a template.
"""

from __future__ import annotations

import logging
from datetime import datetime
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response

from mailward.quarantine import Filters, item_dict
from mailward.web import audit, dashboards, trace
from mailward.web.accounts import AccountError, Accounts, UserView, parse_schedule
from mailward.web.admin import update_account
from mailward.web.deps import COOKIE, Principal, authenticate, check_csrf, get_gateway
from mailward.web.digest import LABELS, Digests, LinkError
from mailward.web.pages import render
from mailward.web.review import ACTIONS, CATEGORIES, Review, ReviewError, user_may_release
from mailward.web.security import client_ip, security_headers
from mailward.web.senders import rules_of

log = logging.getLogger("mailward.web")
router = APIRouter(include_in_schema=False)
PAGE = 50
NOTICES = {
    "release": "Released: the message is on its way.",
    "release_allow": "Released, and the sender is allowed from now on.",
    "not_spam": "Released as not spam; the model will learn from it.",
    "allow_sender": "The sender is allowed from now on.",
    "block_sender": "The sender is blocked from now on.",
    "delete": "Deleted.",
    "request_release": "Release requested; an administrator will decide.",
    "approved": "Request approved; the message was released.",
    "denied": "Request denied.",
    "bulk": "Done; see the results below.",
    "saved": "Saved.",
    "user": "User saved.",
}


class LoginRequired(Exception):
    """The page needs a logged-in session; the handler redirects to /login."""


async def console_user(request: Request) -> Principal:
    """console_user - the session's principal (CSRF checked on forms), or the login page."""
    principal = await authenticate(request, None, request.cookies.get(COOKIE))
    if principal is None:
        raise LoginRequired()
    await check_csrf(request, principal)
    request.state.principal = principal
    return principal


def need(principal: Principal, request: Request, scope: str) -> None:
    if not principal.allows(scope):
        log.warning("refused %s to %s from %s: needs %s", request.url.path, principal.name,
                    principal.ip or "-", scope)
        raise HTTPException(403, f"not allowed: needs {scope}")


def back(path: str, notice: str = "") -> RedirectResponse:
    target = f"{path}?done={notice}" if notice else path
    return RedirectResponse(target, status_code=303, headers=security_headers())


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{text[:40]!r} is not a date such as 2026-01-31") from None
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/")
@router.get("/console")
@router.get("/console/")
async def start() -> Response:
    """start - the console's home is the quarantine list."""
    return RedirectResponse("/console/quarantine", status_code=303)


@router.get("/console/login")
async def console_login(request: Request) -> Response:
    """console_login - the login page lives at /login."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/login{query}", status_code=303)


# Quarantine.


@router.get("/console/quarantine")
async def quarantine_page(
        request: Request, category: str = Query("", max_length=16),
        recipient: str = Query("", max_length=320), sender: str = Query("", max_length=320),
        status: str = Query("held", max_length=16), since: str = Query("", max_length=40),
        until: str = Query("", max_length=40), page: int = Query(1, ge=1, le=20000),
        done: str = Query("", max_length=32),
        principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "quarantine:read")
    if category and category not in CATEGORIES:
        raise HTTPException(422, f"category must be one of {', '.join(CATEGORIES)}")
    if status not in ("held", "released", "deleted", "all"):
        raise HTTPException(422, "status must be held, released, deleted or all")
    filters = Filters(category or None, recipient or None, sender or None,
                      None if status == "all" else status, _date(since), _date(until))
    items, total = await Review(get_gateway(request), principal).list(
        filters, PAGE, (page - 1) * PAGE)
    params = {"category": category, "recipient": recipient, "sender": sender,
              "status": status, "since": since, "until": until}
    return render(request, "quarantine.html", items=items, total=total, page=page,
                  pages=max(1, -(-total // PAGE)), params=params, categories=CATEGORIES,
                  notice=NOTICES.get(done, ""))


@router.get("/console/quarantine/{item_id}")
async def quarantine_item_page(request: Request, item_id: str,
                               done: str = Query("", max_length=32),
                               principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "quarantine:read")
    try:
        view = await Review(get_gateway(request), principal).view(item_id)
    except ReviewError as error:
        return render(request, "error.html", status=error.status, message=str(error))
    return render(request, "quarantine_item.html", view=view, notice=NOTICES.get(done, ""),
                  staff_only=not principal.staff and not user_may_release(
                      get_gateway(request).settings, view.item["category"]))


@router.post("/console/quarantine/bulk")
async def quarantine_bulk(request: Request, principal: Principal = Depends(console_user)
                          ) -> Response:
    need(principal, request, "quarantine:write")
    form = await request.form()
    action = str(form.get("action", ""))
    ids = [str(v)[:64] for v in form.getlist("ids")][:500]
    if action not in ACTIONS or not ids:
        return render(request, "error.html", status=422,
                      message="choose at least one message and an action")
    results = await Review(get_gateway(request), principal).bulk(ids, action)
    return render(request, "bulk.html", action=action, results=results,
                  notice=NOTICES["bulk"])


@router.post("/console/quarantine/{item_id}/act")
async def quarantine_act(request: Request, item_id: str, action: str = Form(..., max_length=32),
                         comment: str = Form("", max_length=2000),
                         principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "quarantine:write")
    try:
        await Review(get_gateway(request), principal).act(item_id, action, comment)
    except ReviewError as error:
        return render(request, "error.html", status=error.status, message=str(error))
    if action == "delete":
        return back("/console/quarantine", action)
    return back(f"/console/quarantine/{item_id}", action)


@router.get("/console/requests")
async def requests_page(request: Request, done: str = Query("", max_length=32),
                        principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "quarantine:read")
    rows = await Review(get_gateway(request), principal).pending_requests(200, 0)
    return render(request, "requests.html", rows=rows, notice=NOTICES.get(done, ""))


@router.post("/console/requests/{request_id}/{decision}")
async def decide_request(request: Request, request_id: int, decision: str,
                         principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "quarantine:write")
    if decision not in ("approve", "deny"):
        raise HTTPException(404, "no such decision")
    try:
        await Review(get_gateway(request), principal).decide(request_id, decision == "approve")
    except ReviewError as error:
        return render(request, "error.html", status=error.status, message=str(error))
    return back("/console/requests", "approved" if decision == "approve" else "denied")


# Trace.


@router.get("/console/trace")
async def trace_page(request: Request, sender: str = Query("", max_length=320),
                     recipient: str = Query("", max_length=320),
                     subject: str = Query("", max_length=500),
                     message_id: str = Query("", max_length=998),
                     queue_id: str = Query("", max_length=32),
                     peer_ip: str = Query("", max_length=64),
                     action: str = Query("", max_length=16),
                     category: str = Query("", max_length=16),
                     since: str = Query("", max_length=40), until: str = Query("", max_length=40),
                     page: int = Query(1, ge=1, le=20000),
                     principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "trace:read")
    if action and action not in dashboards.ACTIONS:
        raise HTTPException(422, "verdict must be deliver, tag, quarantine or reject")
    if category and category not in CATEGORIES:
        raise HTTPException(422, f"category must be one of {', '.join(CATEGORIES)}")
    params = {"sender": sender, "recipient": recipient, "subject": subject,
              "message_id": message_id, "queue_id": queue_id, "peer_ip": peer_ip,
              "action": action, "category": category, "since": since, "until": until}
    fields = {k: (v or None) for k, v in params.items() if k not in ("since", "until")}
    rows, total = await trace.search(get_gateway(request).services.store, PAGE,
                                     (page - 1) * PAGE, since=_date(since), until=_date(until),
                                     **fields)
    return render(request, "trace.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PAGE)), params=params, categories=CATEGORIES,
                  actions=dashboards.ACTIONS)


@router.get("/console/trace/{queue_id}")
async def trace_item_page(request: Request, queue_id: str,
                          principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "trace:read")
    found = await trace.trace(get_gateway(request).services.store, queue_id[:32])
    if found is None:
        return render(request, "error.html", status=404,
                      message=f"no message with queue id {queue_id[:32]!r}")
    return render(request, "trace_item.html", t=found)


# Dashboards.


@router.get("/console/dashboard")
async def dashboard_page(request: Request, hours: int = Query(24, ge=1, le=dashboards.MAX_HOURS),
                         principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "stats:read")
    store = get_gateway(request).services.store
    return render(request, "dashboard.html", hours=hours,
                  flow=await dashboards.flow(store, hours),
                  symbols=await dashboards.symbols(store, hours),
                  dmarc=await dashboards.dmarc(store, hours))


@router.get("/console/panels/{panel}")
async def panel_page(request: Request, panel: str,
                     hours: int = Query(24 * 7, ge=1, le=dashboards.MAX_HOURS),
                     principal: Principal = Depends(console_user)) -> Response:
    if panel not in dashboards.PANELS:
        return render(request, "error.html", status=404, message="no such page")
    need(principal, request, "stats:read")
    data = await dashboards.panel(get_gateway(request).services.store, panel, hours)
    return render(request, "panel.html", panel=panel, data=data, hours=hours)


# Administration.


@router.get("/console/admin/users")
async def users_page(request: Request, done: str = Query("", max_length=32),
                     principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "users:admin")
    users = [UserView.of(u) for u in await Accounts(get_gateway(request).services.store).list()]
    return render(request, "users.html", users=users, notice=NOTICES.get(done, ""))


@router.post("/console/admin/users")
async def users_add(request: Request, username: str = Form(..., max_length=128),
                    password: str = Form("", max_length=1024),
                    role: str = Form("user", max_length=16),
                    addresses: str = Form("", max_length=20000),
                    digest: str = Form("off", max_length=16),
                    principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "users:admin")
    accounts = Accounts(get_gateway(request).services.store)
    try:
        user = await accounts.create(username, password or None, role,
                                     addresses.replace(",", " ").split())
        await accounts.update(user.id, digest_every_hours=parse_schedule(digest))
    except AccountError as error:
        return render(request, "error.html", status=422, message=str(error))
    await audit.record(get_gateway(request).services.store, principal.name, principal.role,
                       "user.add", user.username, ip=principal.ip, new_role=role)
    return back("/console/admin/users", "user")


@router.post("/console/admin/users/{user_id}")
async def users_change(request: Request, user_id: int, role: str = Form(..., max_length=16),
                       addresses: str = Form("", max_length=20000),
                       disabled: str = Form("", max_length=8),
                       principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "users:admin")
    try:
        user = await Accounts(get_gateway(request).services.store).update(
            user_id, role=role, addresses=addresses.replace(",", " ").split(),
            disabled=bool(disabled))
    except AccountError as error:
        return render(request, "error.html", status=422, message=str(error))
    await audit.record(get_gateway(request).services.store, principal.name, principal.role,
                       "user.change", user.username, ip=principal.ip, new_role=role,
                       disabled=bool(disabled))
    return back("/console/admin/users", "user")


@router.get("/console/admin/audit")
async def audit_page(request: Request, outcome: str = Query("", max_length=16),
                     page: int = Query(1, ge=1, le=20000),
                     principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "audit:read")
    rows, total = await audit.entries(get_gateway(request).services.store,
                                      outcome=outcome or None, limit=PAGE,
                                      offset=(page - 1) * PAGE)
    return render(request, "audit.html", rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PAGE)), params={"outcome": outcome})


@router.get("/console/admin/senders")
async def senders_page(request: Request, done: str = Query("", max_length=32),
                       principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "senders:read")
    rules = await rules_of(get_gateway(request).services).list(None, 500, 0)
    return render(request, "senders.html", rules=rules, notice=NOTICES.get(done, ""))


@router.post("/console/admin/senders/{rule_id}/delete")
async def senders_delete(request: Request, rule_id: int,
                         principal: Principal = Depends(console_user)) -> Response:
    need(principal, request, "senders:write")
    rule = await rules_of(get_gateway(request).services).remove(rule_id)
    if rule is not None:
        await audit.record(get_gateway(request).services.store, principal.name,
                           principal.role, "sender.remove", rule.sender, ip=principal.ip)
    return back("/console/admin/senders", "saved")


@router.get("/console/account")
async def account_page(request: Request, done: str = Query("", max_length=32),
                       principal: Principal = Depends(console_user)) -> Response:
    user = await Accounts(get_gateway(request).services.store).get(principal.user_id)
    return render(request, "account.html", user=UserView.of(user),
                  notice=NOTICES.get(done, ""))


@router.post("/console/account")
async def account_save(request: Request, digest: str = Form("", max_length=16),
                       password: str = Form("", max_length=1024),
                       current_password: str = Form("", max_length=1024),
                       principal: Principal = Depends(console_user)) -> Response:
    try:
        await update_account(request, principal, digest or None, password or None,
                             current_password or None)
    except HTTPException as error:
        return render(request, "error.html", status=error.status_code,
                      message=str(error.detail))
    return back("/console/account", "saved")


# Digest links (no session: the signed link is the credential).


@router.get("/digest/{token}")
async def digest_page(request: Request, token: str) -> Response:
    digests = Digests(get_gateway(request))
    try:
        link = await digests.resolve(token[:200])
    except LinkError as error:
        log.warning("refused digest link from %s: %s", client_ip(request) or "-", error)
        return render(request, "digest.html", status=410, error=str(error))
    return render(request, "digest.html", token=token, item=item_dict(link.item),
                  label=LABELS[link.row.action])


@router.post("/digest/{token}")
async def digest_act(request: Request, token: str) -> Response:
    digests = Digests(get_gateway(request))
    try:
        outcome = await digests.redeem(token[:200], client_ip(request))
    except LinkError as error:
        return render(request, "digest.html", status=410, error=str(error))
    except ReviewError as error:
        return render(request, "digest.html", status=error.status, error=str(error))
    return render(request, "digest.html", done=LABELS[outcome["action"]], item=None)


def login_redirect(request: Request, exc: Exception) -> Response:
    """login_redirect - answer LoginRequired with the login form (remembering the page)."""
    from urllib.parse import quote

    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

