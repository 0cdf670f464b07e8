"""Logging in and out: the console's form and the REST calls.

SECURITY: failed logins are throttled (429 past the limits, before the
password is even checked) and audited: per user and client IP, so that
someone guessing from one address cannot lock the user out from another; per
client IP; and, at a much higher limit, per user across all IPs, against
guessing spread over many addresses. The login
form itself carries a CSRF token held in a short-lived cookie (double
submit), so another site cannot log a browser in to an account of its
choosing. The session cookie is HttpOnly and SameSite=Strict, and Secure
unless the console is served over plain HTTP on loopback (``web.cookie_secure``).
After logging in, only a local path is followed (no open redirect).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import Field

from mailward.store.models import User, WebSession
from mailward.web import audit
from mailward.web.accounts import Accounts, UserView
from mailward.web.deps import Body, COOKIE, Principal, current_principal, get_gateway
from mailward.web.pages import render
from mailward.web.security import client_ip, is_loopback_http, security_headers

log = logging.getLogger("mailward.web")
router = APIRouter(tags=["auth"])
LOGIN_CSRF = "mw_login"


class Credentials(Body):
    username: str = Field(..., max_length=128)
    password: str = Field(..., max_length=1024)


def cookie_secure(request: Request) -> bool:
    mode = get_gateway(request).settings.web.cookie_secure
    return mode == "always" or (mode == "auto" and not is_loopback_http(request))


def local_path(target: str | None) -> str:
    """local_path - target if it is a path on this site, else the console's start."""
    if (target and target.startswith("/") and not target.startswith(("//", "/\\"))
            and "\\" not in target and len(target) < 2000):
        return target
    return "/console/quarantine"


async def login(request: Request, username: str, password: str
                ) -> tuple[str, WebSession, User]:
    """login - check credentials (throttled, audited); a new session or 401/429."""
    gateway = get_gateway(request)
    web = gateway.settings.web
    accounts = Accounts(gateway.services.store)
    ip = client_ip(request)
    store = gateway.services.store
    limit = await accounts.throttled(username, ip, web.login_window, web.login_max_failures,
                                     web.login_max_failures_per_ip,
                                     web.login_max_failures_per_user)
    if limit:
        log.warning("refused login of %r from %s: too many failures for %s",
                    username[:128], ip, limit)
        await audit.record(store, f"user:{username[:128]}", "", "login", username[:128],
                           ip=ip, outcome="refused", why=f"throttled: failures for {limit}")
        raise HTTPException(429, "too many failed logins; wait and try again",
                            headers={"Retry-After": str(int(web.login_window))})
    user = await accounts.authenticate(username, password, ip)
    if user is None:
        log.warning("failed login of %r from %s", username[:128], ip)
        await audit.record(store, f"user:{username[:128]}", "", "login", username[:128],
                           ip=ip, outcome="refused", why="wrong user name or password")
        raise HTTPException(401, "wrong user name or password")
    secret, session = await accounts.open_session(
        user, web.session_lifetime, ip, request.headers.get("user-agent", ""))
    await audit.record(store, f"user:{user.username}", user.role, "login", user.username, ip=ip)
    return secret, session, user


def set_session_cookie(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", path="/",
                        secure=cookie_secure(request),
                        max_age=int(get_gateway(request).settings.web.session_lifetime))


async def logout(request: Request, principal: Principal, response: Response) -> None:
    cookie = request.cookies.get(COOKIE, "")
    if cookie:
        await Accounts(get_gateway(request).services.store).close_session(cookie)
    response.delete_cookie(COOKIE, path="/")
    await audit.record(get_gateway(request).services.store, principal.name, principal.role,
                       "logout", principal.name, ip=principal.ip)


# REST.


@router.post("/api/v1/auth/login", summary="Log in; sets the session cookie")
async def api_login(request: Request, response: Response, body: Credentials) -> dict[str, Any]:
    secret, session, user = await login(request, body.username, body.password)
    set_session_cookie(request, response, secret)
    return {"user": asdict(UserView.of(user)), "csrf_token": session.csrf_token,
            "expires_at": session.expires_at.isoformat()}


@router.post("/api/v1/auth/logout", summary="End the session")
async def api_logout(request: Request, response: Response,
                     principal: Principal = Depends(current_principal)) -> dict[str, str]:
    await logout(request, principal, response)
    return {"status": "logged out"}


@router.get("/api/v1/auth/me", summary="Who the caller is and what it may do")
async def api_me(principal: Principal = Depends(current_principal)) -> dict[str, Any]:
    return {"name": principal.name, "role": principal.role, "via": principal.via,
            "addresses": sorted(principal.addresses), "scopes": list(principal.scopes),
            "csrf_token": principal.session.csrf_token if principal.session else None}


# The console's form.


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/console/quarantine"):
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=local_path(next), login_csrf=token)
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", max_age=3600,
                        path="/login", secure=cookie_secure(request))
    return response


@router.post("/login", include_in_schema=False)
async def login_form(request: Request, username: str = Form("", max_length=128),
                     password: str = Form("", max_length=1024),
                     csrf: str = Form("", max_length=200), next: str = Form("")):
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        log.warning("refused login form from %s: missing or wrong CSRF token",
                    client_ip(request))
        return render(request, "login.html", status=403, next=local_path(next),
                      login_csrf=expected, error="The form expired; please try again.")
    try:
        secret, _, _ = await login(request, username, password)
    except HTTPException as error:
        page = render(request, "login.html", status=error.status_code, next=local_path(next),
                      login_csrf=expected, error=str(error.detail), username=username)
        page.headers.update(error.headers or {})  # Retry-After when throttled
        return page
    response = RedirectResponse(local_path(next), status_code=303,
                                headers=security_headers())
    set_session_cookie(request, response, secret)
    response.delete_cookie(LOGIN_CSRF, path="/login")
    return response


@router.post("/logout", include_in_schema=False)
async def logout_form(request: Request, principal: Principal = Depends(current_principal)):
    response = RedirectResponse("/login", status_code=303, headers=security_headers())
    await logout(request, principal, response)
    return response
