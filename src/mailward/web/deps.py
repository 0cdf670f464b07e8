"""Dependencies shared by the routers: the gateway and authentication.

A caller is a ``Principal``: a console user with a session cookie, or an
API bearer token (which may be bound to a user and is limited to its
scopes). What a principal may do is the intersection of its role's grants
and its token's scopes; ``require(scope)`` guards a route with one scope.
``require_token`` keeps the older contract for the other areas' routers: it
accepts a token or a session, derives the scope from the path
(``/api/v1/<area>/...``: ``<area>:read`` for GET, else ``<area>:write``) and
returns an ``ApiToken``.

SECURITY: a state-changing request authenticated by the session cookie must
carry the session's CSRF token (header ``X-CSRF-Token`` or form field
``csrf``), compared in constant time; the cookie is SameSite=Strict as well.
A refused request is logged with the client address and the path.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict

from mailward.store.models import ApiToken, User, WebSession
from mailward.web.accounts import Accounts
from mailward.web.security import client_ip
from mailward.web.tokens import verify_token

if TYPE_CHECKING:
    from mailward.gateway import Gateway

class Body(BaseModel):
    """A request body: a field it does not know is an error (422), never ignored.

    A client that sends ``{"role": "admin"}`` where no role can be changed
    must learn that nothing changed it.
    """

    model_config = ConfigDict(extra="forbid")


log = logging.getLogger("mailward.web")
COOKIE = "mw_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="console session")

# What each role may do; the token's scopes narrow it further.
ROLE_DENIES: dict[str, tuple[str, ...]] = {
    "admin": (),
    "analyst": ("users:",),
}
USER_GRANTS = ("quarantine:read", "quarantine:write", "account")
STAFF = ("admin", "analyst")


def get_gateway(request: Request) -> "Gateway":
    return request.app.state.gateway


def scope_matches(granted: list[str] | tuple[str, ...] | frozenset[str], scope: str) -> bool:
    """scope_matches - does a list of scopes grant scope ("*" and "area:*" included)."""
    area = scope.partition(":")[0]
    return "*" in granted or scope in granted or f"{area}:*" in granted


@dataclass
class Principal:
    """Who is calling, with what role, for which addresses, through what."""

    name: str
    role: str
    via: str  # "session" or "token"
    user_id: int | None = None
    addresses: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = ("*",)
    session: WebSession | None = None
    token: ApiToken | None = field(default=None, repr=False)
    ip: str = ""

    @property
    def staff(self) -> bool:
        return self.role in STAFF

    def allows(self, scope: str) -> bool:
        """allows - may this principal act under scope."""
        if self.role == "user":
            by_role = scope in USER_GRANTS
        else:
            by_role = not any(scope.startswith(p) for p in ROLE_DENIES.get(self.role, ()))
        return by_role and scope_matches(self.scopes, scope)

    def owns(self, recipients: list[str]) -> bool:
        """owns - is any of these recipients one of the principal's addresses."""
        return any(r.lower() in self.addresses for r in recipients)

    def sees(self, recipients: list[str]) -> bool:
        return self.staff or self.owns(recipients)

    def as_token(self) -> ApiToken:
        """as_token - the ApiToken the older routers expect."""
        if self.token is not None:
            return self.token
        return ApiToken(id=None, name=self.name, token_hash="", scopes=list(self.scopes),
                        created_at=datetime.now(UTC), user_id=self.user_id)


def _from_user(user: User, via: str, ip: str, **extra: Any) -> Principal:
    return Principal(name=f"user:{user.username}", role=user.role, via=via, user_id=user.id,
                     addresses=frozenset(a.lower() for a in user.addresses or []), ip=ip,
                     **extra)


async def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None,
                       cookie: str | None) -> Principal | None:
    """authenticate - the principal of a request: bearer token first, then session."""
    gateway = get_gateway(request)
    store = gateway.services.store
    ip = client_ip(request)
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = await verify_token(store, credentials.credentials)
        if token is None:
            log.warning("refused API request to %s from %s: invalid or revoked token",
                        request.url.path, ip or "-")
            raise HTTPException(401, "invalid or revoked token",
                                headers={"WWW-Authenticate": "Bearer"})
        scopes = tuple(token.scopes or ())
        if token.user_id is None:
            return Principal(name=f"token:{token.name}", role="admin", via="token",
                             scopes=scopes, token=token, ip=ip)
        user = await Accounts(store).get(token.user_id)
        if user is None or user.disabled_at is not None:
            log.warning("refused API request to %s from %s: token %s of a disabled user",
                        request.url.path, ip or "-", token.name)
            raise HTTPException(401, "the token's user is disabled")
        return _from_user(user, "token", ip, scopes=scopes, token=token)
    if cookie:
        found = await Accounts(store).session_user(cookie)
        if found is not None:
            session, user = found
            return _from_user(user, "session", ip, session=session)
    return None


async def check_csrf(request: Request, principal: Principal) -> None:
    """check_csrf - refuse a cookie-authenticated change without the session's token."""
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    presented = request.headers.get("x-csrf-token", "")
    if not presented and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        presented = str((await request.form()).get("csrf", ""))
    expected = principal.session.csrf_token if principal.session else ""
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        log.warning("refused %s %s from %s by %s: missing or wrong CSRF token",
                    request.method, request.url.path, principal.ip or "-", principal.name)
        from mailward.web import audit

        await audit.record(get_gateway(request).services.store, principal.name,
                           principal.role, "csrf", request.url.path, ip=principal.ip,
                           outcome="refused", method=request.method)
        raise HTTPException(403, "missing or wrong CSRF token")


async def current_principal(request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                            cookie: str | None = Depends(_cookie)) -> Principal:
    """current_principal - the authenticated caller (CSRF checked), or 401."""
    principal = await authenticate(request, credentials, cookie)
    if principal is None:
        log.warning("refused %s %s from %s: not authenticated", request.method,
                    request.url.path, client_ip(request) or "-")
        raise HTTPException(401, "log in, or send a bearer token (mailward token create)",
                            headers={"WWW-Authenticate": "Bearer"})
    await check_csrf(request, principal)
    request.state.principal = principal
    return principal


def refuse(principal: Principal, request: Request, why: str, status: int = 403) -> HTTPException:
    """refuse - log a refusal and the exception that answers it."""
    log.warning("refused %s %s from %s by %s: %s", request.method, request.url.path,
                principal.ip or "-", principal.name, why)
    return HTTPException(status, why)


def require(scope: str) -> Callable[..., Any]:
    """require - a dependency that admits principals allowed scope."""

    async def dependency(request: Request,
                         principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.allows(scope):
            raise refuse(principal, request, f"not allowed: needs {scope}")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_').replace('*', 'any')}"
    return dependency


def path_scope(request: Request) -> str:
    """path_scope - the scope of an older route: its area and read or write."""
    parts = [p for p in request.url.path.split("/") if p]
    area = parts[2] if len(parts) > 2 and parts[0] == "api" else "api"
    return f"{area}:{'read' if request.method in SAFE_METHODS else 'write'}"


async def require_token(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                        cookie: str | None = Depends(_cookie)) -> ApiToken:
    """require_token - the caller's token (or session as one) allowed this path, or 401/403."""
    principal = await current_principal(request, credentials, cookie)
    scope = path_scope(request)
    if not principal.allows(scope):
        raise refuse(principal, request, f"not allowed: needs {scope}")
    return principal.as_token()
