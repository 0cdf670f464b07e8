"""Dependencies shared by the routers: the gateway and authentication."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailward.store.models import ApiToken
from mailward.web.tokens import verify_token

if TYPE_CHECKING:
    from mailward.gateway import Gateway

log = logging.getLogger("mailward.web")
_bearer = HTTPBearer(auto_error=False)


def get_gateway(request: Request) -> "Gateway":
    return request.app.state.gateway


async def require_token(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
                        ) -> ApiToken:
    """require_token - the caller's live API token, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required (mailward token create)",
                            headers={"WWW-Authenticate": "Bearer"})
    gateway = get_gateway(request)
    token = await verify_token(gateway.services.store, credentials.credentials)
    if token is None:
        log.warning("refused API request to %s from %s: invalid or revoked token",
                    request.url.path, request.client.host if request.client else "-")
        raise HTTPException(401, "invalid or revoked token",
                            headers={"WWW-Authenticate": "Bearer"})
    return token
