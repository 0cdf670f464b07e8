"""API bearer tokens: created once, shown once, stored only as a SHA-256.

A token is ``mw_`` followed by 32 random bytes in URL-safe base64; the store
keeps its SHA-256, so a copy of the database gives no usable token.
Comparison is by hash look-up, which does not leak timing about the token.
A token carries scopes (``quarantine:read``, ``trace:*``, ``*``...) and may be
bound to a console user, whose role and addresses it then acts with.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import select

from mailward.store import Store
from mailward.store.models import ApiToken

PREFIX = "mw_"
SCOPE = re.compile(r"\*|[a-z][a-z0-9_-]{0,31}(:([a-z][a-z0-9_-]{0,31}|\*))?")

# Every scope a route or page asks for. A token may also carry "*" or
# "<area>:*" for one of these areas; any other scope would grant nothing,
# so it is refused rather than stored.
SCOPES = ("account", "audit:read", "digest:run", "metrics:read", "quarantine:read",
          "quarantine:write", "reports:read", "reports:write", "senders:read",
          "senders:write", "stats:read", "trace:read", "trap:read", "trap:write",
          "url:read", "users:admin")
AREAS = tuple(dict.fromkeys(scope.partition(":")[0] for scope in SCOPES))


def check_scopes(scopes: list[str]) -> list[str]:
    """check_scopes - the scopes, or ValueError naming one that is unknown."""
    for scope in scopes:
        if not SCOPE.fullmatch(scope):
            raise ValueError(f"{scope!r} is not a scope such as quarantine:read, trace:* or *")
        area, _, action = scope.partition(":")
        known = scope in SCOPES or (action == "*" and area in AREAS)
        if scope != "*" and not known:
            raise ValueError(f"unknown scope {scope!r}: valid scopes are *, "
                             f"{', '.join(SCOPES)}, or <area>:* for one of "
                             f"{', '.join(AREAS)}")
    return list(dict.fromkeys(scopes)) or ["*"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_token(store: Store, name: str, scopes: list[str] | None = None,
                       user_id: int | None = None) -> str:
    """create_token - a new token; the only time its clear text exists."""
    token = PREFIX + secrets.token_urlsafe(32)
    async with store.session() as session:
        session.add(ApiToken(name=name[:128], token_hash=token_hash(token),
                             scopes=check_scopes(scopes or ["*"]), created_at=datetime.now(UTC),
                             user_id=user_id))
        await session.commit()
    return token


async def verify_token(store: Store, token: str) -> ApiToken | None:
    """verify_token - the live token record for a presented token, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    async with store.session() as session:
        row = await session.scalar(select(ApiToken).where(
            ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None)))
        if row is not None:
            row.last_used_at = datetime.now(UTC)
            await session.commit()
        return row


async def list_tokens(store: Store) -> list[ApiToken]:
    async with store.session() as session:
        return list((await session.scalars(select(ApiToken).order_by(ApiToken.id))).all())


async def revoke_token(store: Store, token_id: int) -> bool:
    async with store.session() as session:
        row = await session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        await session.commit()
        return True
