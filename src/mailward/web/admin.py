"""REST routes for administration: users, tokens, sender rules, audit, account.

Users and tokens need the ``users:admin`` scope (admins only); the audit
log ``audit:read``; sender rules ``senders:read``/``senders:write`` (staff);
``/account`` is the caller's own account (any logged-in user). Every change
is audited.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import Field

from mailward.web import audit
from mailward.web.accounts import AccountError, Accounts, UserView, parse_schedule
from mailward.web.deps import Body, Principal, get_gateway, require
from mailward.web.digest import Digests
from mailward.web.senders import SenderRuleError, rules_of
from mailward.web.tokens import create_token, list_tokens, revoke_token

log = logging.getLogger("mailward.web")
router = APIRouter(prefix="/api/v1", tags=["administration"])
Role = Literal["admin", "analyst", "user"]


class NewUser(Body):
    username: str = Field(..., max_length=128)
    password: str | None = Field(None, max_length=1024)
    role: Role = "user"
    addresses: list[str] = Field(default_factory=list, max_length=200)
    digest: str = Field("off", description="off, daily or a number of hours")


class UserChange(Body):
    role: Role | None = None
    addresses: list[str] | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=1024)
    digest: str | None = None
    disabled: bool | None = None


class AccountChange(Body):
    digest: str | None = Field(None, description="off, daily or a number of hours")
    password: str | None = Field(None, max_length=1024)
    current_password: str | None = Field(None, max_length=1024)


class NewToken(Body):
    name: str = Field(..., max_length=128)
    scopes: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    user_id: int | None = None


class NewRule(Body):
    kind: Literal["allow", "block"]
    sender: str = Field(..., max_length=320, description="address or @domain")
    recipient: str = Field("", max_length=320, description="one recipient, or empty for all")


def _store(request: Request):
    return get_gateway(request).services.store


async def _audit(request: Request, principal: Principal, action: str, target: str,
                 **detail: Any) -> None:
    await audit.record(_store(request), principal.name, principal.role, action, target,
                       ip=principal.ip, **detail)


def _bad(error: Exception) -> HTTPException:
    return HTTPException(422, str(error))


@router.get("/users", summary="All users")
async def users(request: Request, principal: Principal = Depends(require("users:admin"))
                ) -> dict[str, Any]:
    return {"items": [asdict(UserView.of(u)) for u in await Accounts(_store(request)).list()]}


@router.post("/users", summary="Create a user", status_code=201)
async def add_user(request: Request, body: NewUser,
                   principal: Principal = Depends(require("users:admin"))) -> dict[str, Any]:
    accounts = Accounts(_store(request))
    try:
        user = await accounts.create(body.username, body.password, body.role, body.addresses)
        hours = parse_schedule(body.digest)
        if hours:
            user = await accounts.update(user.id, digest_every_hours=hours)
    except AccountError as error:
        raise _bad(error) from None
    await _audit(request, principal, "user.add", user.username, new_role=user.role,
                 addresses=user.addresses)
    return asdict(UserView.of(user))


@router.patch("/users/{user_id}", summary="Change a user")
async def change_user(request: Request, user_id: int, body: UserChange,
                      principal: Principal = Depends(require("users:admin"))) -> dict[str, Any]:
    try:
        user = await Accounts(_store(request)).update(
            user_id, role=body.role, addresses=body.addresses, password=body.password,
            digest_every_hours=parse_schedule(body.digest) if body.digest is not None else None,
            disabled=body.disabled)
    except AccountError as error:
        raise HTTPException(404 if "no user" in str(error) else 422, str(error)) from None
    changed = [k for k, v in body.model_dump().items() if v is not None]
    await _audit(request, principal, "user.change", user.username, fields=changed)
    return asdict(UserView.of(user))


@router.get("/tokens", summary="API tokens (never their values)")
async def tokens(request: Request, principal: Principal = Depends(require("users:admin"))
                 ) -> dict[str, Any]:
    return {"items": [{"id": t.id, "name": t.name, "scopes": t.scopes, "user_id": t.user_id,
                       "created_at": t.created_at.isoformat(),
                       "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                       "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}
                      for t in await list_tokens(_store(request))]}


@router.post("/tokens", summary="Create a token; its value is shown only in this answer",
             status_code=201)
async def add_token(request: Request, body: NewToken,
                    principal: Principal = Depends(require("users:admin"))) -> dict[str, Any]:
    if body.user_id is not None and await Accounts(_store(request)).get(body.user_id) is None:
        raise HTTPException(422, f"no user {body.user_id}")
    try:
        value = await create_token(_store(request), body.name, body.scopes, body.user_id)
    except ValueError as error:
        raise _bad(error) from None
    await _audit(request, principal, "token.create", body.name, scopes=body.scopes,
                 user_id=body.user_id)
    return {"name": body.name, "token": value, "scopes": body.scopes}


@router.delete("/tokens/{token_id}", summary="Revoke a token")
async def delete_token(request: Request, token_id: int,
                       principal: Principal = Depends(require("users:admin"))
                       ) -> dict[str, Any]:
    if not await revoke_token(_store(request), token_id):
        raise HTTPException(404, f"no active token {token_id}")
    await _audit(request, principal, "token.revoke", str(token_id))
    return {"id": token_id, "revoked": True}


@router.get("/audit", summary="The audit log, newest first")
async def audit_log(request: Request, actor: str | None = Query(None, max_length=200),
                    action: str | None = Query(None, max_length=64),
                    target: str | None = Query(None, max_length=512),
                    outcome: Literal["ok", "refused"] | None = None,
                    limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0),
                    principal: Principal = Depends(require("audit:read"))) -> dict[str, Any]:
    rows, total = await audit.entries(_store(request), actor=actor, action=action,
                                      target=target, outcome=outcome, limit=limit,
                                      offset=offset)
    return {"total": total, "items": [audit.entry_dict(r) for r in rows]}


@router.get("/senders", summary="Sender allow and block rules")
async def senders(request: Request, limit: int = Query(200, ge=1, le=1000),
                  offset: int = Query(0, ge=0),
                  principal: Principal = Depends(require("senders:read"))) -> dict[str, Any]:
    rows = await rules_of(get_gateway(request).services).list(None, limit, offset)
    return {"items": [{"id": r.id, "kind": r.kind, "sender": r.sender,
                       "recipient": r.recipient or "*", "created_by": r.created_by,
                       "created_at": r.created_at.isoformat()} for r in rows]}


@router.post("/senders", summary="Add a sender rule", status_code=201)
async def add_sender(request: Request, body: NewRule,
                     principal: Principal = Depends(require("senders:write"))
                     ) -> dict[str, Any]:
    try:
        rule = await rules_of(get_gateway(request).services).add(
            body.kind, body.sender, body.recipient, principal.name)
    except SenderRuleError as error:
        raise _bad(error) from None
    await _audit(request, principal, f"sender.{rule.kind}", rule.sender,
                 recipients=[rule.recipient or "everyone"])
    return {"id": rule.id, "kind": rule.kind, "sender": rule.sender,
            "recipient": rule.recipient or "*"}


@router.delete("/senders/{rule_id}", summary="Remove a sender rule")
async def delete_sender(request: Request, rule_id: int,
                        principal: Principal = Depends(require("senders:write"))
                        ) -> dict[str, Any]:
    rule = await rules_of(get_gateway(request).services).remove(rule_id)
    if rule is None:
        raise HTTPException(404, f"no sender rule {rule_id}")
    await _audit(request, principal, "sender.remove", rule.sender, kind=rule.kind)
    return {"id": rule_id, "removed": True}


@router.get("/account", summary="The caller's own account")
async def account(request: Request, principal: Principal = Depends(require("account"))
                  ) -> dict[str, Any]:
    if principal.user_id is None:
        raise HTTPException(404, "this token belongs to no user")
    user = await Accounts(_store(request)).get(principal.user_id)
    return asdict(UserView.of(user))


@router.patch("/account", summary="Change the digest schedule or the password")
async def change_account(request: Request, body: AccountChange,
                         principal: Principal = Depends(require("account"))) -> dict[str, Any]:
    if principal.user_id is None:
        raise HTTPException(404, "this token belongs to no user")
    return await update_account(request, principal, body.digest, body.password,
                                body.current_password)


async def update_account(request: Request, principal: Principal, digest: str | None,
                         password: str | None, current: str | None) -> dict[str, Any]:
    """update_account - the caller's schedule or password (the old one is needed)."""
    accounts = Accounts(_store(request))
    try:
        if password:
            user = await accounts.get(principal.user_id)
            if await accounts.authenticate(user.username, current or "", principal.ip) is None:
                await _audit(request, principal, "account.password", principal.name,
                             outcome="refused")
                raise HTTPException(403, "the current password is wrong")
        user = await accounts.update(
            principal.user_id, password=password or None,
            digest_every_hours=parse_schedule(digest) if digest is not None else None)
    except AccountError as error:
        raise _bad(error) from None
    await _audit(request, principal, "account.change", principal.name,
                 fields=[k for k, v in (("digest", digest), ("password", password)) if v])
    return asdict(UserView.of(user))


@router.post("/digest/run", summary="Send every quarantine digest that is due now")
async def run_digests(request: Request, principal: Principal = Depends(require("digest:run"))
                      ) -> dict[str, int]:
    sent = await Digests(get_gateway(request)).run_once()
    await _audit(request, principal, "digest.run", "", sent=sent)
    return {"sent": sent}
